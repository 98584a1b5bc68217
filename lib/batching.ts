/**
 * Coalescing: requests of many sockets that arrive together share one database round trip.
 *
 * A job submitted while the database is idle waits one turn of the event loop
 * (`setImmediate`), so every request that arrived in the same I/O phase joins it; jobs
 * submitted while a batch runs form the next batch, which starts as soon as it ends. A
 * job only ever joins a batch that has not started yet, so a request never reads data
 * older than itself: a client that wrote and then reads sees its write.
 */

/** The outcome of one job in a batch: its value, or the error to reject it with. */
export type Outcome<R> = { value: R } | { error: unknown }

interface Waiting<J, R> {
  job: J
  resolve: (value: R) => void
  reject: (error: unknown) => void
}

/** Runs jobs in batches through `run`, which answers one outcome per job, in order. */
export class Batcher<J, R> {
  private queue: Array<Waiting<J, R>> = []
  private busy = false

  constructor (
    private readonly run: (jobs: J[]) => Promise<Array<Outcome<R>>>,
    /** Largest batch: a bound on one statement's size (SQLite allows 32,766 parameters). */
    private readonly maxSize = 500
  ) {}

  submit (job: J): Promise<R> {
    return new Promise<R>((resolve, reject) => {
      this.queue.push({ job, resolve, reject })
      if (!this.busy) {
        this.busy = true
        setImmediate(() => { void this.drain() })
      }
    })
  }

  private async drain (): Promise<void> {
    while (this.queue.length > 0) {
      const batch = this.queue.splice(0, this.maxSize)
      let outcomes: Array<Outcome<R>>
      try {
        outcomes = await this.run(batch.map((w) => w.job))
      } catch (error) {
        outcomes = batch.map(() => ({ error }))
      }
      batch.forEach((w, i) => {
        const outcome = outcomes[i]
        if (outcome !== undefined && 'value' in outcome) w.resolve(outcome.value)
        else w.reject(outcome === undefined ? new Error('batch answered too few jobs') : outcome.error)
      })
    }
    this.busy = false
  }
}
