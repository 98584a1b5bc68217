/**
 * The model observer: a MikroORM event subscriber that turns committed changes of
 * observed entities into {@link ModelMessage}s.
 *
 * When is a change committed? Measured, not assumed (see test/observers.test.ts):
 * - a flush outside any transaction runs in an implicit transaction that has already
 *   committed when `afterFlush` fires → published at once;
 * - a flush inside `em.transactional` / `em.begin()` fires `afterFlush` while the
 *   transaction is open → held until `afterTransactionCommit` of the root transaction,
 *   dropped on `afterTransactionRollback`;
 * - a nested `transactional` is a savepoint (for which MikroORM 6 fires neither hook, and
 *   MikroORM 7 fires both, see orm-compat.ts): its changes are held with the root's, and
 *   dropped if the savepoint was rolled back;
 * - on PostgreSQL a transaction in which a statement failed (an error the app caught) is
 *   aborted: its COMMIT rolls back, yet MikroORM reports a commit. Before such a commit the
 *   observer asks the transaction itself, and publishes nothing if it is aborted.
 * Changes made through the ORM by any code of the app are seen, not only this plugin's
 * actions; `nativeUpdate` / `nativeDelete` / raw queries bypass the unit of work and are not.
 */
import {
  ChangeSetType,
  type ChangeSet,
  type EventSubscriber,
  type FlushEventArgs,
  type MikroORM,
  type TransactionEventArgs
} from '@mikro-orm/core'
import type { FastifyBaseLogger } from 'fastify'
import { dialectOf } from '../dialect.js'
import { metadataOf, SavepointParents, type Transaction } from '../orm-compat.js'
import type { Serializer } from '../serializer.js'
import { relatedKey } from '../serializer.js'
import { RowReader, type ChangeKind, type ModelMessage } from './changes.js'
import { EventRendering, type PendingChange } from './event-rendering.js'

/** Changes flushed inside a transaction, waiting for its root to commit. */
interface Held {
  /** The (possibly nested) transaction they were flushed in, and its ancestors below the root. */
  chain: Transaction[]
  changes: PendingChange[]
}

function kindOf (type: ChangeSetType): ChangeKind | undefined {
  switch (type) {
    case ChangeSetType.CREATE: return 'create'
    case ChangeSetType.UPDATE: return 'update'
    case ChangeSetType.DELETE:
    case ChangeSetType.DELETE_EARLY: return 'delete'
    default: return undefined
  }
}

/** Observes the entities it is told to, on one MikroORM instance, and hands committed changes to `publish`. */
export class ModelObserver implements EventSubscriber {
  private readonly readers = new Map<string, RowReader>()
  /** By root transaction; weak, so a transaction that ends without either hook (a crashed connection) leaks nothing. */
  private readonly held = new WeakMap<object, Held[]>()
  /** Nested transactions (savepoints) that were rolled back. */
  private readonly rolledBack = new WeakSet<object>()
  /** Root transactions found aborted just before their commit (PostgreSQL). */
  private readonly aborted = new WeakSet<object>()
  /** Which transaction each savepoint was opened in (MikroORM 6 and 7 tell it differently). */
  private readonly savepoints = new SavepointParents()
  private readonly checkAborted: boolean
  /** Committed changes waiting for the next turn of the event loop (see emit). */
  private outbox: PendingChange[] = []
  /** The batch of changes being rendered: later batches wait for it, so events keep commit order. */
  private rendering: Promise<void> | undefined
  /** Keys of to-many collections as they were before the flush that replaces them, by owner. */
  private readonly replaced = new WeakMap<object, Map<string, unknown[] | undefined>>()
  private readonly events: EventRendering
  private active = true

  constructor (
    private readonly orm: MikroORM,
    private readonly publish: (message: ModelMessage) => void,
    private readonly log: FastifyBaseLogger
  ) {
    this.checkAborted = dialectOf(orm.em.getPlatform()).errorsAbortTransactions
    this.events = new EventRendering(orm, log)
    // MikroORM has no way to unregister a subscriber: `stop()` turns this one off instead.
    orm.em.getEventManager().registerSubscriber(this)
  }

  /** Observe `className` from now on. */
  observe (className: string): void {
    if (this.readers.has(className)) return
    const meta = metadataOf(this.orm.getMetadata(), className)
    if (meta !== undefined) this.readers.set(className, new RowReader(meta))
  }

  /** Events of `className` are shown by `serializers` and decided on relation `paths` (every route on it declares its own). */
  describe (className: string, serializers: Serializer[], paths: readonly string[]): void {
    this.events.describe(className, serializers, paths)
  }

  /**
   * Stop publishing (the app is closing), once the changes being rendered have their rows
   * loaded: the app closes its ORM next, and a query still waiting for a pool connection
   * then would hold it forever (MikroORM 7's kysely driver drops its pool before ending it,
   * so a connection that arrives meanwhile is never released and `orm.close()` never returns).
   */
  async stop (): Promise<void> {
    this.active = false
    // Each batch starts rendering only while active: awaiting the batch last chained awaits them all.
    await this.rendering?.catch(() => {})
  }

  /**
   * Before the flush writes: the keys of the to-many collections it replaces, as they were
   * (after it, MikroORM keeps only the new ones) — how a row leaving a list filtered by
   * one of its tags is recognised.
   */
  onFlush (args: FlushEventArgs): void {
    if (!this.active || this.readers.size === 0) return
    for (const collection of args.uow.getCollectionUpdates()) {
      const owner = collection.owner as object
      const name = collection.property.name
      const className = (owner as { __meta?: { className: string } }).__meta?.className ?? ''
      if (this.events.tracked(className)?.has(name) !== true) continue
      let map = this.replaced.get(owner)
      if (map === undefined) this.replaced.set(owner, (map = new Map()))
      if (!map.has(name)) map.set(name, collection.getSnapshot()?.map(relatedKey))
    }
  }

  afterFlush (args: FlushEventArgs): void {
    if (!this.active || this.readers.size === 0) return
    const messages = this.collect(args.uow.getChangeSets(), args.uow.getCollectionUpdates())
    if (messages.length === 0) return
    const em = args.em
    if (!em.isInTransaction()) {
      // The flush's own implicit transaction has committed already.
      this.emit(messages)
      return
    }
    const trx = em.getTransactionContext<Transaction>() as Transaction
    const chain: Transaction[] = []
    let root = trx
    for (let parent = this.savepoints.parentOf(root); parent !== undefined; parent = this.savepoints.parentOf(root)) {
      chain.push(root)
      this.watchRollback(root)
      root = parent
    }
    let list = this.held.get(root)
    if (list === undefined) this.held.set(root, (list = []))
    list.push({ chain, changes: messages })
  }

  beforeTransactionStart (args: TransactionEventArgs): void {
    this.savepoints.beforeTransactionStart(args)
  }

  afterTransactionStart (args: TransactionEventArgs): void {
    this.savepoints.afterTransactionStart(args)
  }

  /**
   * One round trip, only for a transaction holding changes on a database where errors abort
   * transactions: a statement on an aborted transaction fails, and that is the only sign.
   * The failure is caught, so the app's own commit goes on exactly as it would have.
   */
  async beforeTransactionCommit (args: TransactionEventArgs): Promise<void> {
    const trx = args.transaction as object | undefined
    if (!this.checkAborted || trx === undefined || this.held.get(trx) === undefined) return
    try {
      await args.em.getConnection('write').execute('select 1', [], 'all', trx as never)
    } catch {
      this.aborted.add(trx)
    }
  }

  afterTransactionCommit (args: TransactionEventArgs): void {
    const trx = args.transaction as object | undefined
    if (trx === undefined) return
    const list = this.held.get(trx)
    if (list === undefined) return
    this.held.delete(trx)
    // "Committed" after an error aborted it: PostgreSQL rolled everything back.
    if (this.aborted.has(trx)) return
    for (const { chain, changes } of list) {
      // A savepoint rolled back inside a transaction that committed: its changes never happened.
      if (chain.some((t) => this.rolledBack.has(t))) continue
      this.emit(changes)
    }
  }

  afterTransactionRollback (args: TransactionEventArgs): void {
    const trx = args.transaction as object | undefined
    if (trx === undefined) return
    this.held.delete(trx)
    // MikroORM 7 fires this hook for a savepoint too: its changes never happened.
    this.rolledBack.add(trx)
  }

  /**
   * MikroORM 6 fires no hook when a savepoint is rolled back, but it rolls back by calling
   * the nested transaction's own `rollback()`; wrapping that one method of that one
   * object is the only way to tell its changes from those of a savepoint that was released.
   * (MikroORM 7 rolls a savepoint back with `rollbackToSavepoint()` and fires
   * `afterTransactionRollback` for it, which marks it instead.)
   */
  private watchRollback (trx: Transaction): void {
    const original = trx.rollback
    if (typeof original !== 'function' || (original as { wsRestWatched?: true }).wsRestWatched === true) return
    const rolledBack = this.rolledBack
    const watched = Object.assign(function (this: unknown, ...args: unknown[]) {
      rolledBack.add(trx)
      return original.apply(this, args)
    }, { wsRestWatched: true as const })
    trx.rollback = watched
  }

  /**
   * The flush's changes of observed entities: one per change set, and an update for each
   * row whose only change is a to-many collection (MikroORM writes those without a change
   * set of the row's own).
   */
  private collect (changeSets: Array<ChangeSet<any>>, collections: ReadonlyArray<{ owner: object }>): PendingChange[] {
    const changes: PendingChange[] = []
    const seen = new Set<object>()
    for (const cs of changeSets) {
      const reader = this.readers.get(cs.meta.className)
      const change = kindOf(cs.type)
      if (reader === undefined || change === undefined) continue
      const entity = cs.entity as Record<string, unknown>
      seen.add(entity)
      // A delete's change set has no original data: the entity object still holds the row as it was.
      const before = change === 'create' ? null : reader.read(change === 'delete' ? entity : (cs.originalEntity ?? entity) as Record<string, unknown>)
      if (change === 'delete' && before !== null) this.events.readLoaded(cs.meta.className, entity, before)
      const after = change === 'delete' ? null : reader.read(entity)
      const pk = (after ?? before)?.[cs.meta.primaryKeys[0]]
      changes.push(this.pending(entity, { kind: 'model', entity: cs.meta.className, change, pk, before, after }))
    }
    for (const { owner } of collections) {
      const className = (owner as { __meta?: { className: string, primaryKeys: string[] } }).__meta?.className
      const reader = className === undefined ? undefined : this.readers.get(className)
      if (reader === undefined || seen.has(owner)) continue
      seen.add(owner)
      const row = reader.read(owner as Record<string, unknown>)
      const pk = relatedKey(owner)
      changes.push(this.pending(owner, { kind: 'model', entity: className as string, change: 'update', pk, before: { ...row }, after: row }))
    }
    return changes
  }

  /** A change with what its flush replaced of the row's collections (taken once: the next flush starts afresh). */
  private pending (entity: object, message: ModelMessage): PendingChange {
    const replaced = this.replaced.get(entity)
    if (replaced !== undefined) this.replaced.delete(entity)
    return { message, replaced }
  }

  /**
   * Publish on the next turn of the event loop, in commit order. These hooks run inside
   * the writer's flush: delivering to 10,000 local subscribers there would hold the
   * writer's own reply until the last of them was sent.
   */
  private emit (changes: PendingChange[]): void {
    if (this.outbox.length === 0) setImmediate(() => this.flushOutbox())
    this.outbox.push(...changes)
  }

  /**
   * Publish the waiting changes: at once when none needs rendering and no earlier batch is
   * still being rendered; else after their rendering, behind the earlier batch.
   */
  private flushOutbox (): void {
    const changes = this.outbox
    this.outbox = []
    if (this.rendering === undefined && !changes.some((c) => this.events.loads(c.message.entity))) {
      this.publishAll(changes)
      return
    }
    const run = (this.rendering ?? Promise.resolve())
      .then(async () => { if (this.active) await this.events.render(changes) })
      .then(() => this.publishAll(changes))
    this.rendering = run
    void run.finally(() => { if (this.rendering === run) this.rendering = undefined })
  }

  private publishAll (changes: PendingChange[]): void {
    for (const { message } of changes) {
      try {
        this.publish(message)
      } catch (err) {
        // A failure to publish must never fail the write that has already committed.
        this.log.error({ err, entity: message.entity }, 'fastify-ws-rest: publishing a change failed')
      }
    }
  }
}
