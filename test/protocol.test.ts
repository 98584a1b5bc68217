/**
 * The wire protocol's shapes and error rows (docs/protocol.md), over a real socket to the example server.
 */
import t from 'tap'
import { connect } from './helpers/client.js'
import { startExample } from './helpers/server.js'

const REPLY_KEYS = ['action', 'data', 'errors', 'request_id', 'response_status']

t.test('every reply has exactly the five keys and echoes request_id verbatim', async (t) => {
  const { base } = await startExample(t)
  const client = await connect(`${base}/ws/`)
  t.teardown(() => client.close())
  for (const id of [42, 'a-uuid', { nested: [1, 2] }, null, 0]) {
    client.send({ action: 'list', request_id: id })
    const reply = await client.next()
    t.strictSame(Object.keys(reply).sort(), REPLY_KEYS)
    t.strictSame(reply.request_id, id)
    t.equal(reply.response_status, 200)
  }
  client.send({ action: 'list' })
  t.equal((await client.next()).request_id, null, 'absent request_id → null')
})
