/**
 * What differs between the MikroORM majors the plugin runs on (6.6 on knex, 7.x on kysely),
 * in one place. Each difference is decided by feature detection at run time, never by
 * reading a version number, and typed so that `tsc` passes against either major's types.
 */
import type { EntityMetadata, EntityName, MetadataStorage, MikroORM, TransactionEventArgs } from '@mikro-orm/core'

/**
 * The metadata of the entity MikroORM knows by `className`, or `undefined`.
 * MikroORM 7 no longer takes a class name where an entity is expected (`find(EntityName)` has
 * no string in its type) and looks names up with `getByClassName`; MikroORM 6 has no
 * `getByClassName` and `find` takes the name.
 */
export function metadataOf (metadata: MetadataStorage, className: string): EntityMetadata | undefined {
  const byName = (metadata as { getByClassName?: (name: string, validate: false) => EntityMetadata | undefined }).getByClassName
  if (typeof byName === 'function') return byName.call(metadata, className, false)
  return metadata.find(className as never)
}

/**
 * Create or update the tables of the ORM's entities (tests, the example, the benchmarks):
 * MikroORM 7 renamed `orm.schema.updateSchema()` to `orm.schema.update()`.
 */
export async function updateSchema (orm: MikroORM): Promise<void> {
  const schema = orm.schema as unknown as { update?: () => Promise<void>, updateSchema?: () => Promise<void> }
  if (typeof schema.update === 'function') await schema.update()
  else await schema.updateSchema!()
}

/** A transaction as MikroORM hands it to hooks and `em.getTransactionContext()`. */
export interface Transaction {
  /** MikroORM 6 (knex): a nested transaction (savepoint) points at the one it was opened in. */
  parentTransaction?: Transaction
  /** MikroORM 7 (kysely): set on a savepoint, absent on a root transaction. */
  savepointName?: string
  rollback?: (...args: unknown[]) => unknown
}

/**
 * Which transaction each savepoint was opened in.
 *
 * MikroORM 6 hands around knex transactions, whose nested ones carry `parentTransaction`,
 * and fires no transaction hook for a savepoint. MikroORM 7 hands around kysely
 * transactions, which have no link to their parent, but fires the hooks for savepoints too:
 * `beforeTransactionStart` with the parent, then `afterTransactionStart` with the savepoint,
 * both from the same (forked) EntityManager. Feeding those two hooks here links them.
 */
export class SavepointParents {
  /** By EntityManager: the transaction a savepoint is being opened in. */
  private readonly opening = new WeakMap<object, Transaction>()
  private readonly parents = new WeakMap<object, Transaction>()

  beforeTransactionStart (args: TransactionEventArgs): void {
    const parent = args.transaction as Transaction | undefined
    if (parent !== undefined) this.opening.set(args.em, parent)
  }

  afterTransactionStart (args: TransactionEventArgs): void {
    const trx = args.transaction as Transaction | undefined
    const parent = this.opening.get(args.em)
    this.opening.delete(args.em)
    if (trx !== undefined && parent !== undefined && trx.savepointName !== undefined) this.parents.set(trx, parent)
  }

  /** The transaction `trx` was opened in, or `undefined` for a root transaction. */
  parentOf (trx: Transaction): Transaction | undefined {
    return trx.parentTransaction ?? this.parents.get(trx)
  }
}

/** How the ORM's SQL reads a condition with nothing in it, for deciding scopes in memory (observer/matcher.ts). */
export interface EmptyConditions {
  /** `{$or: []}`: MikroORM 6 drops it (no condition, every row); MikroORM 7 renders `1 = 0` (no row). */
  readonly emptyOrIsFalse: boolean
  /** `$not` of no condition (`{$not: {}}`, `{$not: {$and: []}}`): MikroORM 6 drops it; MikroORM 7 renders `1 = 0`. */
  readonly notOfNothingIsFalse: boolean
}

/** MikroORM 6's reading, for an ORM without a query builder to ask. */
const DROPPED: EmptyConditions = { emptyOrIsFalse: false, notOfNothingIsFalse: false }
const emptyConditionsByOrm = new WeakMap<object, EmptyConditions>()

/**
 * Ask the ORM itself how it renders `{$or: []}` and `{$not: {}}` for `entity` (SQL only
 * built, never run): a `where` in the SQL means it reads them as false, none that it drops
 * them. Decided once per ORM instance.
 */
export function emptyConditionsOf (orm: MikroORM, entity: EntityName<any>): EmptyConditions {
  let found = emptyConditionsByOrm.get(orm)
  if (found !== undefined) return found
  type QueryBuilder = { where: (condition: object) => QueryBuilder, getFormattedQuery: () => string }
  const em = orm.em.fork() as unknown as { createQueryBuilder?: (entity: EntityName<any>) => QueryBuilder }
  if (typeof em.createQueryBuilder !== 'function') return DROPPED
  const filters = (condition: object): boolean => /\bwhere\b/i.test(em.createQueryBuilder!(entity).where(condition).getFormattedQuery())
  found = { emptyOrIsFalse: filters({ $or: [] }), notOfNothingIsFalse: filters({ $not: {} }) }
  emptyConditionsByOrm.set(orm, found)
  return found
}

type ExecuteQuery = (query: string, cb: () => Promise<unknown>, context?: unknown) => Promise<unknown>
const kKeepsStatements = Symbol('fastify-ws-rest: keeps failed statements')

/**
 * Have every error a query of `orm` raises carry the statement that failed, as `sql`
 * (database-errors.ts reads it). MikroORM 6's errors (knex) begin their message with the
 * statement; MikroORM 7's (kysely) carry only the driver's text, and SQLite's "FOREIGN KEY
 * constraint failed" names nothing else: the statement is the only way to tell the delete of
 * a row still referred to from a write naming a missing row, and which relation it named.
 * Every query passes through the connection's `executeQuery` (both majors), which is
 * wrapped once per connection; the statement never reaches a reply.
 */
export function keepFailedStatements (orm: MikroORM): void {
  const driver = orm.em.getDriver()
  for (const type of ['write', 'read'] as const) {
    const connection = driver.getConnection(type) as unknown as { executeQuery?: ExecuteQuery, [kKeepsStatements]?: true }
    const original = connection.executeQuery
    if (typeof original !== 'function' || connection[kKeepsStatements] === true) continue
    connection[kKeepsStatements] = true
    connection.executeQuery = async function (this: unknown, query, cb, context) {
      try {
        return await original.call(this, query, cb, context)
      } catch (err) {
        if (err !== null && typeof err === 'object' && !('sql' in err) && typeof query === 'string') {
          Object.defineProperty(err, 'sql', { value: query, configurable: true, writable: true })
        }
        throw err
      }
    }
  }
}

/** What of a kysely `ControlledTransaction` (MikroORM 7's transaction) {@link releaseLostConnections} uses. */
interface KyselyTransaction {
  savepointName?: string
  readonly isRolledBack: boolean
  readonly isCommitted: boolean
  getExecutor: () => { provideConnection: <T>(fn: (connection: KyselyConnection) => Promise<T>) => Promise<T> }
  rollback: () => { execute: () => Promise<void> }
}
interface KyselyConnection { executeQuery: (query: { sql: string }) => Promise<unknown> }
type Rollback = (ctx: unknown, ...rest: unknown[]) => Promise<void>
const kReleasesLost = Symbol('fastify-ws-rest: releases lost connections')

function isKyselyTransaction (ctx: unknown): ctx is KyselyTransaction {
  return ctx !== null && typeof ctx === 'object' && typeof (ctx as KyselyTransaction).getExecutor === 'function' &&
    typeof (ctx as KyselyTransaction).rollback === 'function' && typeof (ctx as KyselyTransaction).isRolledBack === 'boolean'
}

/**
 * `pg`'s answer to a query on a client whose connection is gone (`_queryable` false, or
 * `_ending`): exactly the clients `pg-pool` removes, instead of keeping, when they are released.
 */
function notQueryable (err: unknown): boolean {
  return err instanceof Error && /^Client (has encountered a connection error|was closed) and is not queryable$/.test(err.message)
}

/**
 * Give back the pool slot of a transaction whose connection was lost (MikroORM 7 on PostgreSQL).
 *
 * MikroORM 7 runs transactions as kysely `ControlledTransaction`s, which hand their
 * connection back to the pool only once `ROLLBACK` (or `COMMIT`) succeeds. On a connection
 * the server killed mid-transaction the `ROLLBACK` cannot succeed, so the connection was
 * never released: every connection lost that way took a pool slot for good, and
 * `orm.close()` waited for it forever. (MikroORM 6, on knex, releases it itself.)
 *
 * The connection's `rollback` is wrapped once: when a root transaction's rollback fails,
 * kysely's own `rollback()` is run again, with that one connection's `ROLLBACK` counted as
 * done when `pg` refuses it because the connection is gone (the server discarded the
 * transaction with its session). kysely then marks the transaction rolled back and releases
 * the connection through its normal path, and `pg-pool` drops the dead client rather than
 * pooling it (it checks the same state `pg`'s refusal reports), so the next query opens a
 * fresh one. A connection that is still alive gets a real `ROLLBACK` (retried) or stays as it
 * was; the original error is rethrown either way (MikroORM logs it and rethrows the error
 * that caused the rollback).
 */
export function releaseLostConnections (orm: MikroORM): void {
  const driver = orm.em.getDriver()
  for (const type of ['write', 'read'] as const) {
    const connection = driver.getConnection(type) as unknown as { rollback?: Rollback, [kReleasesLost]?: true }
    const original = connection.rollback
    if (typeof original !== 'function' || connection[kReleasesLost] === true) continue
    connection[kReleasesLost] = true
    connection.rollback = async function (this: unknown, ctx, ...rest) {
      try {
        await original.call(this, ctx, ...rest)
      } catch (err) {
        // A savepoint's connection is its root transaction's, released when that one rolls back.
        if (isKyselyTransaction(ctx) && ctx.savepointName === undefined && !ctx.isRolledBack && !ctx.isCommitted) {
          await releaseIfLost(ctx).catch(() => {})
        }
        throw err
      }
    }
  }
}

async function releaseIfLost (trx: KyselyTransaction): Promise<void> {
  const connection = await trx.getExecutor().provideConnection(async (c) => c)
  const own = Object.getOwnPropertyDescriptor(connection, 'executeQuery')
  const execute = connection.executeQuery
  connection.executeQuery = async function (query) {
    if (query.sql !== 'rollback') return await execute.call(this, query)
    // Three tries: a connection being torn down first fails what is in flight ("Connection
    // terminated…"), and is marked not queryable at the same moment.
    for (let attempt = 1; ; attempt++) {
      try {
        return await execute.call(this, query)
      } catch (err) {
        if (notQueryable(err)) return { rows: [] }
        if (attempt === 3) throw err
      }
    }
  }
  try {
    await trx.rollback().execute()
  } finally {
    if (own === undefined) delete (connection as Partial<KyselyConnection>).executeQuery
    else Object.defineProperty(connection, 'executeQuery', own)
  }
}
