/**
 * `node --import tsx bench/serialize.ts`: what encoding a reply costs, without sockets or
 * database queries — a retrieve's reply (one Note), a list's (20 Notes) and a nested
 * list's (20 Docs, each with its owner and labels as objects), from loaded entities.
 *
 * - shape: the serializer's shape alone (a plain copy of each entity, by the schema);
 * - reply: what a reply costs today: shape, encodeReply (JSON.stringify of the envelope),
 *   and the text turned into the bytes a socket write sends (Buffer.from, as ws does: a
 *   writer that leaves its string unflattened only moves that cost there);
 * - fast-json-stringify: the same reply with the shaped data written by fast-json-stringify
 *   compiled from the envelope and the response schema (when installed: it comes with
 *   fastify), the bytes checked equal to today's first.
 *
 * Prints ns per reply, best of 7 rounds. Pin it for steadier numbers: `taskset -c 1 node …`.
 */
import type { EntityMetadata } from '@mikro-orm/core'
import { Type, type TSchema } from '@sinclair/typebox'
import { metadataOf } from '../lib/orm-compat.js'
import { encodeReply } from '../lib/protocol.js'
import { SerializerCompiler, type Serializer } from '../lib/serializer.js'
import { Doc, DocNested, Note, NotePublic, openOrm, seed } from './entity.js'

type Stringify = (value: unknown) => string
const fjs = await import('fast-json-stringify' as string).then((m: { default: (schema: unknown) => Stringify }) => m.default, () => undefined)

const orm = await openOrm(':memory:')
await seed(orm, 100)
const em = orm.em.fork()
const compiler = new SerializerCompiler(orm.getMetadata())
const notes = await em.find(Note, { id: { $lte: 20 } }, { orderBy: { id: 'asc' } })
const docs = await em.find(Doc, {}, { populate: ['owner', 'labels'] as never, orderBy: { id: 'asc' } })
const noteSerializer = compiler.compile(metadataOf(orm.getMetadata(), 'Note') as EntityMetadata, NotePublic)
const docSerializer = compiler.compile(metadataOf(orm.getMetadata(), 'Doc') as EntityMetadata, DocNested)

const shaped = (s: Serializer, value: object | object[]): unknown => Array.isArray(value) ? value.map((e) => s.shape(e)) : s.shape(value)
const envelope = (data: TSchema): TSchema =>
  Type.Object({ errors: Type.Array(Type.Any()), data, action: Type.Any(), response_status: Type.Integer(), request_id: Type.Any() })

const cases: Array<[string, Serializer, object | object[], TSchema]> = [
  ['retrieve (1 Note)', noteSerializer, notes[4], NotePublic],
  ['list (20 Notes)', noteSerializer, notes, Type.Array(NotePublic)],
  ['nested list (20 Docs)', docSerializer, docs, Type.Array(DocNested)]
]

function time (fn: () => number, iterations: number): number {
  for (let i = 0; i < iterations / 10; i++) fn()
  let best = Infinity
  for (let round = 0; round < 7; round++) {
    const started = process.hrtime.bigint()
    let bytes = 0
    for (let i = 0; i < iterations; i++) bytes += fn()
    if (bytes === 0) throw new Error('nothing written')
    best = Math.min(best, Number(process.hrtime.bigint() - started) / iterations)
  }
  return best
}

const col = (ns: number | undefined): string => (ns === undefined ? 'n/a' : `${ns.toFixed(0)} ns`).padStart(12)
console.log(`node ${process.version}; fast-json-stringify ${fjs === undefined ? 'not installed' : 'compiled per case'}`)
console.log('reply                  |        shape |        reply | fast-json-stringify')
for (const [name, s, value, schema] of cases) {
  const reply = (): string => encodeReply({ action: 'x', status: 200, data: shaped(s, value), errors: [], requestId: 17 })
  const iterations = Array.isArray(value) ? 20_000 : 200_000
  let viaFjs: number | undefined
  if (fjs !== undefined) {
    const write = fjs(envelope(schema))
    const written = (): string => write({ errors: [], data: shaped(s, value), action: 'x', response_status: 200, request_id: 17 })
    if (written() !== reply()) throw new Error(`${name}: fast-json-stringify wrote other bytes:\n${written()}\n${reply()}`)
    viaFjs = time(() => Buffer.from(written()).length, iterations)
  }
  const shapeOnly = time(() => { shaped(s, value); return 1 }, iterations)
  const today = time(() => Buffer.from(reply()).length, iterations)
  console.log(`${name.padEnd(22)} | ${col(shapeOnly)} | ${col(today)} | ${col(viaFjs)}`)
}
await orm.close()
