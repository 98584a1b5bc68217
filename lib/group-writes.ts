/**
 * Group commit: writes of many sockets arriving together go to the database in one flush
 * (one transaction, multi-row statements) instead of one transaction each.
 *
 * Each request is still validated on its own, and answered on its own: a request that
 * fails its own checks (404, 400, …) fails alone before the flush. If the shared flush
 * fails (a unique violation, say), nothing of it was written, and every request of the
 * batch is run again alone, each in a transaction of its own — so one bad row fails only
 * its own request, with the error it would have had anyway.
 *
 * Only used where nothing of the app runs per entity inside the write (no perform*
 * overrides, no entity lifecycle hooks) and for writes without a `version`, whose row
 * lock must stay with its own transaction: then running a request again on the failure
 * path is unobservable. A change's checks — `getQueryset`, object permissions, validation,
 * `prepareUpdate` — run between the batch's read and its flush, concurrently for the
 * requests of a batch and holding no database connection (the read is done, the flush has
 * not begun). `prepareCreate` and `prepareUpdate` run once per request whatever happens to
 * the batch: a create joins its batch prepared, and a change that must run alone after all
 * takes what it prepared with it (its scope and permissions are checked again there, on the
 * row as it is then).
 */
import type { EntityManager, FilterQuery, MikroORM } from '@mikro-orm/core'
import type { ActionContext } from './context.js'
import { Batcher, type Outcome } from './batching.js'
import { NotFound } from './errors.js'

/** What group commit needs of the model it writes for. */
export interface GroupedModel<E extends object> {
  readonly entity: import('@mikro-orm/core').EntityName<E>
  readonly lookupField: string
  lookupValue: (args: Record<string, unknown>) => unknown
  /** Whether each connection has a scope of its own: its requests' rows are then read one by one, each within its scope. */
  readonly scopedPerConnection: boolean
  findInScope: (em: EntityManager, ctx: ActionContext, args: Record<string, unknown>) => Promise<E | null>
  /** The request's object permissions on the row it names (403 fails that request alone). */
  checkObject: (ctx: ActionContext, entity: E) => Promise<void>
  /** A change's `data` validated (400 alone) and prepared (`prepareUpdate`): what is assigned to the row. */
  changeData: (ctx: ActionContext, kind: 'update' | 'patch', entity: E, data: unknown) => Promise<unknown>
  /** Load what a change replaces / a removal takes with it, so their changes are published (generic.ts). */
  beforeChange: (em: EntityManager, entities: E[], data: unknown) => Promise<void>
  loadForRemoval: (em: EntityManager, entities: E[]) => Promise<void>
  detachForRemoval: (entity: E) => void
  /** Load what the route's replies show of `entities` (one query per relation for all of them). */
  loadForReplies: (entities: E[]) => Promise<void>
  /** The request alone, in a transaction of its own: the path of every request that cannot be grouped. */
  createAlone: (ctx: ActionContext, data: any) => Promise<E>
  changeAlone: (ctx: ActionContext, kind: 'update' | 'patch', args: Record<string, unknown>, prepared?: { data: unknown }) => Promise<E>
  removeAlone: (ctx: ActionContext, args: Record<string, unknown>) => Promise<void>
}

interface CreateJob { ctx: ActionContext, data: any }
interface ChangeJob {
  ctx: ActionContext
  kind: 'update' | 'patch'
  args: Record<string, unknown>
  /** What the request validated and prepared in its batch: a retry alone reuses it rather than preparing again. */
  prepared?: { data: unknown }
}
interface RemoveJob { ctx: ActionContext, args: Record<string, unknown> }

/** Settle each job by `run`, one after another, never throwing. */
async function eachAlone<J, R> (jobs: J[], run: (job: J) => Promise<R>): Promise<Array<Outcome<R>>> {
  const outcomes: Array<Outcome<R>> = []
  for (const job of jobs) {
    try {
      outcomes.push({ value: await run(job) })
    } catch (error) {
      outcomes.push({ error })
    }
  }
  return outcomes
}

/** The grouped creates, changes and deletes of one route's model. */
export class GroupWrites<E extends object> {
  private readonly creates = new Batcher<CreateJob, E>(async (jobs) => await this.createMany(jobs))
  private readonly changes = new Batcher<ChangeJob, E>(async (jobs) => await this.changeMany(jobs))
  private readonly removes = new Batcher<RemoveJob, undefined>(async (jobs) => await this.removeMany(jobs))

  constructor (private readonly orm: MikroORM, private readonly model: GroupedModel<E>) {}

  async create (ctx: ActionContext, data: unknown): Promise<E> {
    return await this.creates.submit({ ctx, data })
  }

  async change (ctx: ActionContext, kind: 'update' | 'patch', args: Record<string, unknown>): Promise<E> {
    return await this.changes.submit({ ctx, kind, args })
  }

  async remove (ctx: ActionContext, args: Record<string, unknown>): Promise<void> {
    await this.removes.submit({ ctx, args })
  }

  private async createMany (jobs: CreateJob[]): Promise<Array<Outcome<E>>> {
    const em = this.orm.em.fork()
    const entities = jobs.map((job) => em.create(this.model.entity, job.data))
    try {
      await em.flush()
    } catch {
      return await eachAlone(jobs, async (job) => await this.model.createAlone(job.ctx, job.data))
    }
    await this.loadForReplies(entities)
    return entities.map((value) => ({ value }))
  }

  /**
   * What the replies show of the batch's rows, loaded for all of them at once: each
   * request's reply then finds its relations loaded, instead of one query per request.
   * A failure here is not the write's: each reply loads its own row again.
   */
  private async loadForReplies (entities: E[]): Promise<void> {
    if (entities.length > 1) await this.model.loadForReplies(entities).catch(() => undefined)
  }

  private async changeMany (jobs: ChangeJob[]): Promise<Array<Outcome<E>>> {
    const outcomes = await this.onRows(jobs, async (entity, job) => {
      job.prepared = { data: await this.model.changeData(job.ctx, job.kind, entity, job.args.data) }
    }, async (em, entity, job) => {
      const data = job.prepared?.data
      await this.model.beforeChange(em, [entity], data)
      em.assign(entity, data as never)
      return entity
    }, async (job) => await this.model.changeAlone(job.ctx, job.kind, job.args, job.prepared))
    await this.loadForReplies(outcomes.flatMap((outcome) => 'value' in outcome && outcome.value !== undefined ? [outcome.value] : []))
    return outcomes
  }

  private async removeMany (jobs: RemoveJob[]): Promise<Array<Outcome<undefined>>> {
    return await this.onRows(jobs, async () => {}, async (em, entity) => {
      this.model.detachForRemoval(entity)
      em.remove(entity)
      return undefined
    }, async (job) => {
      await this.model.removeAlone(job.ctx, job.args)
      return undefined
    // What the removals take with them, loaded for the whole batch at once rather than per row.
    }, async (em, entities) => { await this.model.loadForRemoval(em, entities) })
  }

  /**
   * Requests on existing rows: one query loads every row of the batch (one per request
   * where connections have scopes of their own); each request is checked on its row —
   * object permissions, then `check` (a 404, 403 or its own 400 fails it alone), all the
   * batch's requests at once — and `apply`-ed to it; one flush writes them all. A row asked
   * for twice in one batch is left to the second request alone, after the flush, so each
   * reply shows its own write. Whenever the shared read or flush fails, the requests it
   * carried run `alone` instead.
   */
  private async onRows<J extends { ctx: ActionContext, args: Record<string, unknown> }, R> (
    jobs: J[],
    check: (entity: E, job: J) => Promise<void>,
    apply: (em: EntityManager, entity: E, job: J) => Promise<R>,
    alone: (job: J) => Promise<R>,
    prepare?: (em: EntityManager, entities: E[]) => Promise<void>
  ): Promise<Array<Outcome<R>>> {
    const { first, again } = this.splitRepeats(jobs)
    const em = this.orm.em.fork()
    const rows = await this.load(em, first)
    if (rows === undefined) return await eachAlone(jobs, alone)
    const outcomes = new Map<J, Outcome<R>>()
    // The requests' own checks, concurrently: one waiting on the app (a permission asking a
    // service, a slow prepareUpdate) does not hold up the others' turn to be checked.
    const checked: Array<J | undefined> = await Promise.all(first.map(async (job) => {
      const entity = rows.get(job)
      if (entity === undefined) {
        outcomes.set(job, { error: new NotFound() })
        return undefined
      }
      try {
        await this.model.checkObject(job.ctx, entity)
        await check(entity, job)
        return job as J | undefined
      } catch (error) {
        outcomes.set(job, { error })
        return undefined
      }
    }))
    const accepted = checked.filter((job): job is J => job !== undefined)
    if (prepare !== undefined && accepted.length > 0) {
      try {
        await prepare(em, accepted.map((job) => rows.get(job) as E))
      } catch {
        return await eachAlone(jobs, alone)
      }
    }
    const applied: J[] = []
    for (const job of accepted) {
      try {
        outcomes.set(job, { value: await apply(em, rows.get(job) as E, job) })
        applied.push(job)
      } catch (error) {
        outcomes.set(job, { error })
      }
    }
    try {
      if (applied.length > 0) await em.flush()
    } catch {
      const retried = await eachAlone(applied, alone)
      applied.forEach((job, i) => outcomes.set(job, retried[i]))
    }
    const repeated = await eachAlone(again, alone)
    again.forEach((job, i) => outcomes.set(job, repeated[i]))
    return jobs.map((job) => outcomes.get(job) as Outcome<R>)
  }

  /** The first request for each row, and the repeats (run alone after the batch, in order). */
  private splitRepeats<J extends { args: Record<string, unknown> }> (jobs: J[]): { first: J[], again: J[] } {
    const seen = new Set<string>()
    const first: J[] = []
    const again: J[] = []
    for (const job of jobs) {
      const key = String(this.model.lookupValue(job.args))
      if (seen.has(key)) again.push(job)
      else {
        seen.add(key)
        first.push(job)
      }
    }
    return { first, again }
  }

  /**
   * The row each job names (absent: none, 404) — in one query, or one per job within its
   * connection's scope; undefined when a query failed.
   */
  private async load<J extends { ctx: ActionContext, args: Record<string, unknown> }> (em: EntityManager, jobs: J[]): Promise<Map<J, E> | undefined> {
    const rows = new Map<J, E>()
    if (jobs.length === 0) return rows
    try {
      if (this.model.scopedPerConnection) {
        const found = await Promise.all(jobs.map(async (job) => await this.model.findInScope(em, job.ctx, job.args)))
        jobs.forEach((job, i) => { if (found[i] !== null) rows.set(job, found[i]) })
        return rows
      }
      const values = jobs.map((job) => this.model.lookupValue(job.args))
      const found = await em.find(this.model.entity, { [this.model.lookupField]: { $in: values } } as FilterQuery<any>)
      const byValue = new Map(found.map((row) => [String((row as Record<string, unknown>)[this.model.lookupField]), row]))
      for (const job of jobs) {
        const row = byValue.get(String(this.model.lookupValue(job.args)))
        if (row !== undefined) rows.set(job, row)
      }
      return rows
    } catch {
      return undefined
    }
  }
}
