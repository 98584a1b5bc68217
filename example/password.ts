/**
 * Password hashing with Node's scrypt: `scrypt$<salt>$<hash>`, never the plain text.
 *
 * scrypt runs on libuv's thread pool (4 threads by default), which the database driver
 * (SQLite), file system and DNS share. At most {@link MAX_CONCURRENT_HASHES} hashes run at
 * once; more wait their turn, so a burst of logins or sign-ups cannot take every thread and
 * stall the other clients' queries.
 */
import { randomBytes, scrypt, timingSafeEqual } from 'node:crypto'
import { promisify } from 'node:util'

const scryptAsync = promisify(scrypt) as (password: string, salt: Buffer, keylen: number) => Promise<Buffer>

/** Hashes running at once; the rest queue, first come first served. */
export const MAX_CONCURRENT_HASHES = 2

let running = 0
const waiting: Array<() => void> = []

/** Run one scrypt within the concurrency cap. */
async function limitedScrypt (password: string, salt: Buffer, keylen: number): Promise<Buffer> {
  if (running >= MAX_CONCURRENT_HASHES) await new Promise<void>((resolve) => waiting.push(resolve))
  else running++
  try {
    return await scryptAsync(password, salt, keylen)
  } finally {
    // Hand the slot straight to the next waiter (the count stays), or give it back.
    const next = waiting.shift()
    if (next !== undefined) next()
    else running--
  }
}

/** How many hashes are running now and how many wait (for tests and diagnostics). */
export function hashingLoad (): { running: number, waiting: number } {
  return { running, waiting: waiting.length }
}

/** Hash a password with a fresh random salt. */
export async function hashPassword (password: string): Promise<string> {
  const salt = randomBytes(16)
  const hash = await limitedScrypt(password, salt, 32)
  return `scrypt$${salt.toString('base64')}$${hash.toString('base64')}`
}

/** Check a password against a stored hash. */
export async function verifyPassword (password: string, stored: string): Promise<boolean> {
  const [scheme, salt, hash] = stored.split('$')
  if (scheme !== 'scrypt' || salt === undefined || hash === undefined) return false
  const expected = Buffer.from(hash, 'base64')
  const actual = await limitedScrypt(password, Buffer.from(salt, 'base64'), expected.length)
  return timingSafeEqual(actual, expected)
}
