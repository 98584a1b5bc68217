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

/**
 * Runs jobs in batches through `run`, which answers one outcome per job, in order — all at
 * once (one statement for the batch), or one promise per job, each answered as soon as it
 * settles (distinct queries of one batch, so a quick one never waits for a slow one).
 */
export class Batcher<J, R> {
  private queue: Array<Waiting<J, R>> = []
  private busy = false

  constructor (
    private readonly run: (jobs: J[]) => Promise<Array<Outcome<R>>> | Array<Promise<R>>,
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
        const answers = this.run(batch.map((w) => w.job))
        if (Array.isArray(answers)) {
          batch.forEach((w, i) => { void answers[i].then(w.resolve, w.reject) })
          // The next batch still starts only once this one is done: it must not read older data than a write between them.
          await Promise.allSettled(answers)
          continue
        }
        outcomes = await answers
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
