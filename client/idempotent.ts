/**
 * Which actions may be re-sent when the connection drops before their reply: those
 * whose name says they only read. Guessing wrong must fail safe — a write taken for a
 * read would be done twice — so a name counts as a read only when its first word is a
 * read verb and no word of it is a write verb; everything else counts as a write.
 * A request can say otherwise with `{ idempotent: true | false }`.
 */

const READ_VERBS = new Set([
  'list', 'retrieve', 'get', 'read', 'fetch', 'find', 'search', 'count', 'query', 'lookup',
  'exists', 'check', 'describe', 'show', 'view', 'load', 'head', 'ping', 'stat', 'stats'
])

const WRITE_VERBS = new Set([
  'create', 'update', 'patch', 'delete', 'destroy', 'remove', 'set', 'add', 'put', 'post',
  'insert', 'upsert', 'save', 'write', 'edit', 'modify', 'move', 'rename', 'send', 'publish',
  'submit', 'archive', 'restore', 'reset', 'clear', 'increment', 'decrement', 'toggle', 'mark',
  'assign', 'lock', 'unlock', 'claim', 'consume', 'pop', 'take', 'approve', 'reject', 'confirm'
])

/** True when `action` looks like an idempotent read (`list`, `retrieve`, `get_profile`, `listUsers`…). */
export function looksIdempotent (action: string): boolean {
  // camelCase → words without a lookbehind (older Safari cannot parse one).
  const words = action.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase().split(/[^a-z0-9]+/).filter((word) => word !== '')
  if (words.length === 0 || !READ_VERBS.has(words[0])) return false
  return !words.some((word) => WRITE_VERBS.has(word))
}
