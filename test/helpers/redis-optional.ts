/**
 * Whether the tests' Redis answers, asked without touching the test plan.
 *
 * helpers/redis.ts plans no test at all when Redis is away, which suits a file about Redis
 * only. A file that also has tests needing no Redis asks here first, skips just its Redis
 * tests with the reason, and imports helpers/redis.ts (dynamically) only when Redis is
 * there. As in helpers/redis.ts, `REQUIRE_SERVICES=1` makes an absent Redis a failure.
 */
import { Redis } from 'ioredis'

const url = process.env.REDIS_URL === undefined || process.env.REDIS_URL === ''
  ? 'redis://127.0.0.1:6379'
  : process.env.REDIS_URL

/** `false` when Redis answers PING; otherwise the reason to skip (or a throw, under REQUIRE_SERVICES=1). */
export async function redisSkip (): Promise<string | false> {
  const client = new Redis(url, { lazyConnect: true, connectTimeout: 2_000, retryStrategy: () => null, maxRetriesPerRequest: 0 })
  let cause: Error | undefined
  client.on('error', (err: Error) => { cause ??= err })
  let problem: string | undefined
  try {
    await client.connect()
    await client.ping()
  } catch (err) {
    problem = (cause ?? err as Error).message
  } finally {
    client.disconnect()
  }
  if (problem === undefined) return false
  const reason = `Redis at ${url.replace(/\/\/([^:@/]*):[^@/]*@/, '//$1:***@')} is not available (${problem})`
  if (process.env.REQUIRE_SERVICES === '1') throw new Error(`${reason}; REQUIRE_SERVICES=1 makes this a failure`)
  return `${reason}; set REQUIRE_SERVICES=1 to fail instead`
}
