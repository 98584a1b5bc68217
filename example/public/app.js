/**
 * The example page: the users of `/ws/`, live.
 *
 * It subscribes to the whole list (`subscribe_list`, no filter) and then loads it (`list`),
 * so every create, update and delete made anywhere — this tab, another tab, another client —
 * changes the table without a reload. The form creates users, a row's Edit/Save patches one,
 * Delete deletes one, and a refused request shows the server's field errors next to the
 * fields they are about.
 *
 * `/client.js` is fastify-ws-rest's client (client/index.ts), bundled by the example
 * server on its first request (example/page.ts). Everything a user typed or another
 * client stored is put in the page as text, never as HTML.
 */
import { createClient, WsRestError, WsRestConnectionLostError, WsRestTimeoutError } from '/client.js'

/** @typedef {{ id: number, username: string, email: string }} User */
/** @typedef {{ action: string, data: unknown, status: number }} SubscriptionEvent */
/** @typedef {{ input: HTMLInputElement, output: HTMLElement }} Field */

// The socket is on the page's own host: ws:// next to http://, wss:// next to https://.
const url = new URL('/ws/', location.href)
url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:'

/**
 * Typed like `createClient<typeof users>(url)` in TypeScript (example/app.ts exports `users`).
 * @type {import('../../client/index.js').RouteClient<typeof import('../app.js').users>}
 */
const client = createClient(url.href)

/** @param {string} testid */
function byTestId (testid) {
  const element = document.querySelector(`[data-testid="${testid}"]`)
  if (!(element instanceof HTMLElement)) throw new Error(`the page has no [data-testid="${testid}"]`)
  return element
}

const connection = byTestId('connection')
const connectionText = byTestId('connection-text')
const pageError = byTestId('page-error')
const table = byTestId('users')
const tbody = /** @type {HTMLTableSectionElement} */ (document.getElementById('users-body'))
const empty = byTestId('empty')
const form = /** @type {HTMLFormElement} */ (byTestId('create-form'))
const createError = byTestId('create-error')
const createMessage = byTestId('create-message')
const createSubmit = /** @type {HTMLButtonElement} */ (byTestId('create-submit'))

/** @type {Record<string, Field>} The create form's fields, by the names the server keys its errors with. */
const createFields = Object.fromEntries(['username', 'email', 'password1', 'password2'].map((name) => [name, {
  input: /** @type {HTMLInputElement} */ (form.elements.namedItem(name)),
  output: byTestId(`error-${name}`)
}]))

// ---------------------------------------------------------------------------------------
// Connection state

/** @param {string} text */
function showConnection (text) {
  connection.dataset.state = client.state
  connectionText.textContent = text
}

client.on('open', () => {
  showConnection('Connected')
  // After a reconnect the client subscribes again by itself; this only matters when the
  // very first subscribe never got through.
  void goLive()
})
client.on('reconnecting', ({ attempt, delay }) => {
  showConnection(`Connection lost — reconnecting in ${Math.ceil(delay / 1000)} s (attempt ${attempt})…`)
})
client.on('close', () => {
  if (client.state === 'closed') showConnection('Disconnected')
})
// Socket errors are followed by a close, which the badge shows; callbacks that threw are bugs of this page.
client.on('error', (error) => { if (!/WebSocket error/.test(error.message)) showPageError(error.message) })

// ---------------------------------------------------------------------------------------
// The users, and the table that shows them

/** @type {Map<number, User>} */
let users = new Map()
let loaded = false
/** @type {Map<number, HTMLTableRowElement>} */
const rows = new Map()

/**
 * @param {unknown} value
 * @returns {value is User}
 */
function isUser (value) {
  return typeof value === 'object' && value !== null && typeof /** @type {User} */ (value).id === 'number'
}

/** @param {string} message */
function showPageError (message) {
  pageError.textContent = message
  pageError.hidden = message === ''
}

/** @param {HTMLTableRowElement} row */
function flash (row) {
  row.classList.remove('flash')
  void row.offsetWidth // restart the animation when the row changes twice in a row
  row.classList.add('flash')
}

/**
 * @param {string} text
 * @param {string} testid
 * @param {string} label
 * @param {() => void} onClick
 * @param {string} [className]
 */
function button (text, testid, label, onClick, className) {
  const element = document.createElement('button')
  element.type = 'button'
  element.textContent = text
  element.dataset.testid = testid
  element.setAttribute('aria-label', label)
  if (className !== undefined) element.className = className
  element.addEventListener('click', onClick)
  return element
}

/**
 * A row in view mode: the user's fields as text, Edit and Delete.
 * @param {HTMLTableRowElement} row
 * @param {User} user
 */
function showRow (row, user) {
  row.dataset.mode = 'view'
  const [, name, email, actions] = row.cells
  name.replaceChildren(user.username)
  email.replaceChildren(user.email)
  actions.replaceChildren(
    button('Edit', 'edit', `Edit ${user.username}`, () => editRow(row, user.id)),
    button('Delete', 'delete', `Delete ${user.username}`, () => void deleteUser(row, user.id), 'danger')
  )
}

/**
 * @param {string} field
 * @param {string} value
 * @param {string} label
 * @param {number} id
 * @returns {Field & { cell: DocumentFragment }}
 */
function editField (field, value, label, id) {
  const input = document.createElement('input')
  input.value = value
  input.dataset.testid = `edit-${field}`
  input.setAttribute('aria-label', label)
  if (field === 'email') input.type = 'email'
  const output = document.createElement('p')
  output.className = 'field-error'
  output.id = `edit-error-${field}-${id}`
  output.dataset.testid = `edit-error-${field}`
  input.setAttribute('aria-describedby', output.id)
  const cell = document.createDocumentFragment()
  cell.append(input, output)
  return { input, output, cell }
}

/**
 * Edit mode: inputs for username and email, Save (a `patch`) and Cancel.
 * @param {HTMLTableRowElement} row
 * @param {number} id
 */
function editRow (row, id) {
  const user = users.get(id)
  if (user === undefined) return
  row.dataset.mode = 'edit'
  const [, nameCell, emailCell, actions] = row.cells
  const fields = {
    username: editField('username', user.username, `Username of user ${id}`, id),
    email: editField('email', user.email, `Email of user ${id}`, id)
  }
  const error = document.createElement('p')
  error.className = 'form-error'
  error.setAttribute('role', 'alert')
  error.dataset.testid = 'edit-error'
  const save = button('Save', 'save', `Save user ${id}`, () => void saveRow(row, id, fields, error, [save, cancel]), 'primary')
  const cancel = button('Cancel', 'cancel', `Cancel editing user ${id}`, () => {
    const current = users.get(id)
    if (current !== undefined) showRow(row, current)
    row.cells[3].querySelector('button')?.focus()
  })
  nameCell.replaceChildren(fields.username.cell)
  emailCell.replaceChildren(fields.email.cell)
  actions.replaceChildren(save, cancel, error)
  for (const { input } of Object.values(fields)) {
    input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter') save.click()
      if (event.key === 'Escape') cancel.click()
    })
  }
  fields.username.input.focus()
}

/**
 * @param {HTMLTableRowElement} row
 * @param {number} id
 * @param {Record<string, Field>} fields
 * @param {HTMLElement} error
 * @param {HTMLButtonElement[]} buttons
 */
async function saveRow (row, id, fields, error, buttons) {
  clearErrors(fields, error)
  for (const b of buttons) b.disabled = true
  try {
    const user = await client.actions.patch({ pk: id, data: { username: fields.username.input.value, email: fields.email.input.value } })
    if (isUser(user)) users.set(user.id, user)
    const current = users.get(id)
    if (current !== undefined) showRow(row, current)
    flash(row)
    render()
    row.cells[3].querySelector('button')?.focus()
  } catch (err) {
    showErrors(err, fields, error)
    for (const b of buttons) b.disabled = false
  }
}

/**
 * @param {HTMLTableRowElement} row
 * @param {number} id
 */
async function deleteUser (row, id) {
  for (const b of row.querySelectorAll('button')) b.disabled = true
  try {
    await client.actions.delete({ pk: id })
  } catch (err) {
    // 404: someone deleted it first, which is what was asked.
    if (!(err instanceof WsRestError && err.status === 404)) {
      showPageError(`Could not delete user ${id}: ${describe(err)}`)
      for (const b of row.querySelectorAll('button')) b.disabled = false
      return
    }
  }
  users.delete(id)
  render()
}

/** @param {number} id */
function newRow (id) {
  const row = document.createElement('tr')
  row.dataset.testid = 'user-row'
  row.dataset.id = String(id)
  const idCell = document.createElement('td')
  idCell.className = 'id'
  idCell.textContent = String(id)
  const name = document.createElement('td')
  name.dataset.testid = 'user-username'
  const email = document.createElement('td')
  email.dataset.testid = 'user-email'
  const actions = document.createElement('td')
  actions.className = 'row-actions'
  row.append(idCell, name, email, actions)
  return row
}

/**
 * Bring the table in line with `users`, in id order. Existing rows are updated in place and
 * only moved when out of order, so a row being edited keeps its inputs and focus.
 * @param {Set<number>} [changed] ids to light up
 */
function render (changed = new Set()) {
  const sorted = [...users.values()].sort((a, b) => a.id - b.id)
  sorted.forEach((user, index) => {
    let row = rows.get(user.id)
    if (row === undefined) {
      row = newRow(user.id)
      rows.set(user.id, row)
      showRow(row, user)
    } else if (row.dataset.mode === 'view' && (row.dataset.username !== user.username || row.cells[2].textContent !== user.email)) {
      showRow(row, user)
    }
    row.dataset.username = user.username
    if (tbody.rows[index] !== row) tbody.insertBefore(row, tbody.rows[index] ?? null)
    if (changed.has(user.id)) flash(row)
  })
  for (const [id, row] of rows) {
    if (!users.has(id)) { row.remove(); rows.delete(id) }
  }
  empty.hidden = !loaded || users.size > 0
}

// ---------------------------------------------------------------------------------------
// Live: subscribe_list, then list

/**
 * Events that arrived while a `list` was on its way: applied again on top of its result,
 * which may have been read before they happened. Null when no list is pending.
 * @type {SubscriptionEvent[] | null}
 */
let eventsDuringList = null
let listGeneration = 0

/**
 * @param {SubscriptionEvent} event
 * @returns {number | undefined} the id it touched
 */
function apply (event) {
  if ((event.action === 'create' || event.action === 'update') && isUser(event.data)) {
    users.set(event.data.id, event.data)
    return event.data.id
  }
  if (event.action === 'delete') {
    const pk = Number(/** @type {{ pk?: unknown }} */ (event.data)?.pk)
    users.delete(pk)
  }
  return undefined
}

/** @param {SubscriptionEvent} event */
function onEvent (event) {
  eventsDuringList?.push(event)
  const id = apply(event)
  render(new Set(id === undefined ? [] : [id]))
}

/** (Re)load the whole list: at start, and whenever the client says events may have been missed. */
async function reload () {
  const generation = ++listGeneration
  eventsDuringList = []
  try {
    const list = await client.actions.list()
    // A newer reload started meanwhile: its answer is the fresher one.
    if (generation !== listGeneration) return
    users = new Map((Array.isArray(list) ? list : []).filter(isUser).map((user) => [user.id, user]))
    for (const event of eventsDuringList) apply(event)
    loaded = true
    table.dataset.loaded = 'true'
    table.setAttribute('aria-busy', 'false')
    showPageError('')
    render()
  } catch (err) {
    if (generation === listGeneration) showPageError(`Could not load the users: ${describe(err)}`)
  } finally {
    if (generation === listGeneration) eventsDuringList = null
  }
}

/** @type {import('../../client/index.js').Subscription | undefined} */
let subscription
let subscribing = false

/** Subscribe first, then list: nothing that happens in between is missed. */
async function goLive () {
  if (subscribing || subscription?.active === true) return
  subscribing = true
  try {
    subscription = await client.subscribe('subscribe_list', {}, onEvent, {
      onRefetch: () => void reload(),
      onError: (err) => showPageError(`The live subscription ended: ${describe(err)}`)
    })
    await reload()
  } catch (err) {
    // Tried again on the next 'open'.
    showPageError(`Could not subscribe to changes: ${describe(err)}`)
  } finally {
    subscribing = false
  }
}

void goLive()

// ---------------------------------------------------------------------------------------
// Errors, as the user should read them

/** @param {unknown} err */
function describe (err) {
  if (err instanceof WsRestError) {
    const parts = err.errors.map((item) => typeof item === 'string' ? item : JSON.stringify(item))
    return `${parts.join(' ') || 'refused'} (${err.status})`
  }
  if (err instanceof WsRestTimeoutError) return 'the server did not answer in time.'
  if (err instanceof WsRestConnectionLostError) return 'the connection dropped before the answer; the change may or may not have been made.'
  return err instanceof Error ? err.message : String(err)
}

/**
 * @param {Record<string, Field>} fields
 * @param {HTMLElement} general
 */
function clearErrors (fields, general) {
  for (const { input, output } of Object.values(fields)) {
    output.textContent = ''
    input.removeAttribute('aria-invalid')
  }
  general.textContent = ''
}

/**
 * A 400 carries `errors: [{field: [messages]}]` (DRF's shape): each message goes next to
 * its field; the rest (other keys, plain strings, other failures) to `general`.
 * @param {unknown} err
 * @param {Record<string, Field>} fields
 * @param {HTMLElement} general
 */
function showErrors (err, fields, general) {
  /** @type {string[]} */
  const rest = []
  /** @type {HTMLInputElement | undefined} */
  let first
  if (err instanceof WsRestError) {
    for (const item of err.errors) {
      if (typeof item !== 'object' || item === null) { rest.push(String(item)); continue }
      for (const [key, value] of Object.entries(item)) {
        const text = Array.isArray(value) ? value.join(' ') : String(value)
        const field = fields[key]
        if (field === undefined) {
          rest.push(key === 'non_field_errors' ? text : `${key}: ${text}`)
          continue
        }
        field.output.textContent = text
        field.input.setAttribute('aria-invalid', 'true')
        first ??= field.input
      }
    }
    if (first === undefined && rest.length === 0) rest.push(`The server refused the request (${err.status}).`)
  } else {
    rest.push(`Not saved: ${describe(err)}`)
  }
  general.textContent = rest.join(' ')
  first?.focus()
}

// ---------------------------------------------------------------------------------------
// The create form

form.addEventListener('submit', (event) => {
  event.preventDefault()
  void createUser()
})
// "Created …" is about the last submit: it goes once the user starts on the next one.
form.addEventListener('input', () => { createMessage.textContent = '' })

async function createUser () {
  clearErrors(createFields, createError)
  createMessage.textContent = ''
  createSubmit.disabled = true
  const value = (/** @type {string} */ name) => createFields[name].input.value
  try {
    const user = await client.actions.create({
      data: { username: value('username'), email: value('email'), password1: value('password1'), password2: value('password2') }
    })
    // The subscription brings it too; showing it now does not depend on that.
    if (isUser(user)) {
      users.set(user.id, user)
      render(new Set([user.id]))
      createMessage.textContent = `Created ${user.username} (id ${user.id}).`
    }
    form.reset()
    createFields.username.input.focus()
  } catch (err) {
    showErrors(err, createFields, createError)
  } finally {
    createSubmit.disabled = false
  }
}
