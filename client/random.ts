/**
 * Randomness from the platform's CSPRNG (`crypto.getRandomValues`, in browsers and in
 * Node ≥ 19 as a global): request_id prefixes, and the secret keys of resumable
 * subscriptions, which must not be guessable by another connection.
 */

/** `bytes` random bytes as lowercase hex. */
export function randomHex (bytes: number): string {
  const crypto = (globalThis as { crypto?: { getRandomValues: <T extends Uint8Array>(array: T) => T } }).crypto
  if (crypto === undefined) throw new TypeError('crypto.getRandomValues is not available in this runtime')
  return Array.from(crypto.getRandomValues(new Uint8Array(bytes)), (byte) => byte.toString(16).padStart(2, '0')).join('')
}

/**
 * A source of request_ids unique to one client: a random prefix (two clients, or two
 * page loads, never share ids) and a counter (cheap, and readable in logs).
 */
export function requestIds (): () => string {
  const prefix = randomHex(6)
  let counter = 0
  return () => `${prefix}-${++counter}`
}
