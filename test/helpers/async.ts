/**
 * Waiting without sleeping: deferred promises, gates a handler can be held at, and a
 * bound on every wait so a missing event fails the test instead of hanging it.
 */

/** The part of a tap test the helpers need: somewhere to register cleanup. */
export interface Teardown { teardown: (fn: () => unknown) => void }

/** Default bound on a wait for something that must happen promptly. */
export const BOUND = 5_000

/** A promise with its resolve handle: lets one handler release another. */
export function deferred<T = void> (): { promise: Promise<T>, resolve: (value: T) => void } {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => { resolve = r })
  return { promise, resolve }
}

/** `promise`, or a rejection naming `what` after `ms`. */
export async function within<T> (promise: Promise<T>, what: string, ms = BOUND): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const limit = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
  })
  try {
    return await Promise.race([promise, limit])
  } finally {
    clearTimeout(timer)
  }
}

/**
 * A gate code under test can be held at: `entered` resolves when it reaches `wait()`,
 * and it stays there until `open()`.
 */
export interface Gate { wait: () => Promise<void>, entered: Promise<void>, open: () => void }

export function gate (): Gate {
  const opened = deferred()
  const entered = deferred()
  return { wait: async () => { entered.resolve(); await opened.promise }, entered: entered.promise, open: opened.resolve }
}

/**
 * Wait until `check()` holds, re-checking as the event loop turns, for state that changes
 * with no event to await (the server noticing a socket's close; Redis's subscription
 * list). Bounded like every wait: fails naming `what` after `ms`.
 */
export async function eventually (check: () => boolean | Promise<boolean>, what: string, ms = BOUND): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`${what}: not within ${ms} ms`)
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}
