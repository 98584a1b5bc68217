/**
 * The response schema chosen per request (DCRF's get_serializer_class): `schema.responses`
 * declares the variants, `responseFor(ctx)` picks one — in replies and in events, each
 * subscriber getting the variant it subscribed with.
 */
import { Type } from '@sinclair/typebox'
import t from 'tap'
import { mixins } from '../index.js'
import { openClient } from './helpers/client.js'
import { Author, LIBRARY, seedLibrary } from './helpers/library.js'
import { startApp } from './helpers/server.js'

const AuthorPublic = Type.Object({ id: Type.Integer(), name: Type.String() })
const AuthorStaff = Type.Object({ id: Type.Integer(), name: Type.String(), email: Type.String() })

t.test('staff see the email, others do not: in retrieve, list and the events of their subscriptions', async (t) => {
  const { base, orm } = await startApp(t, LIBRARY, (app) => {
    app.wsRest.route('/authors/', {
      entity: Author,
      schema: { response: AuthorPublic, responses: { staff: AuthorStaff }, update: Type.Object({ name: Type.String() }) },
      responseFor: (ctx) => ctx.request.headers['x-staff'] === 'yes' ? 'staff' : undefined,
      actions: [mixins.list(), mixins.retrieve(), mixins.patch(), mixins.subscribeInstance()]
    })
  })
  await seedLibrary(orm, { authors: ['Alice'], tags: [], books: [] })
  const staff = await openClient(t, `${base}/authors/`, { headers: { 'x-staff': 'yes' } })
  const visitor = await openClient(t, `${base}/authors/`)
  const email = 'alice@private.example'
  t.strictSame((await staff.request('retrieve', { pk: 1 })).data, { id: 1, name: 'Alice', email })
  t.strictSame((await visitor.request('retrieve', { pk: 1 })).data, { id: 1, name: 'Alice' })
  t.strictSame((await visitor.request('list')).data, [{ id: 1, name: 'Alice' }])
  await staff.ask({ action: 'subscribe_instance', request_id: 's', pk: 1 })
  await visitor.ask({ action: 'subscribe_instance', request_id: 'v', pk: 1 })
  await visitor.request('patch', { pk: 1, data: { name: 'Alicia' } })
  t.strictSame((await staff.next()).data, { id: 1, name: 'Alicia', email }, 'the staff subscriber\'s event in its variant')
  t.strictSame((await visitor.next()).data, { id: 1, name: 'Alicia' }, 'the visitor\'s in the public one')
})
