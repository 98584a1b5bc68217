/**
 * The example's page (`/`, example/public/) in a real browser: the machine's Chromium
 * (Debian's `chromium` package, at /usr/bin/chromium) driven by playwright-core. No
 * browser is ever downloaded.
 *
 * Two tabs on one server: what one creates, edits and deletes shows up in the other
 * without a reload; refused input shows the server's field errors; neither tab logs an
 * error. Screenshots go to test-artifacts/ at the repository root.
 *
 * Without Chromium the file plans no test, with the reason — unless REQUIRE_SERVICES=1
 * (CI), which makes that a failure (as test/helpers/redis.ts does for Redis).
 */
import { accessSync, constants } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { fileURLToPath } from 'node:url'
import { chromium, type Browser, type Locator, type Page } from 'playwright-core'
import t from 'tap'
import type { Teardown } from './helpers/async.js'
import { startServer } from './helpers/example-process.js'
import { startExample } from './helpers/server.js'

const CHROMIUM = '/usr/bin/chromium'
/** Bound on any one wait for the page: generous for a loaded CI machine, never a sleep. */
const WAIT = 10_000
const artifacts = new URL('../test-artifacts/', import.meta.url)

/** Why the browser cannot run, or undefined. */
function chromiumProblem (): string | undefined {
  try {
    accessSync(CHROMIUM, constants.X_OK)
    return undefined
  } catch {
    return `Chromium not found at ${CHROMIUM}: install Debian's chromium package`
  }
}

// Checked once, before any test is declared.
const problem = chromiumProblem()
if (problem !== undefined) {
  if (process.env.REQUIRE_SERVICES === '1') {
    throw new Error(`${problem}; REQUIRE_SERVICES=1 makes this a failure`)
  }
  t.plan(0, `${problem}; set REQUIRE_SERVICES=1 to fail instead`)
}

/** Chromium, closed in teardown. The flags keep it off the (closed) network and out of the GPU. */
async function launch (t: Teardown): Promise<Browser> {
  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
  t.teardown(async () => { await browser.close() })
  return browser
}

/** A tab and what it logged as an error (console.error, uncaught exceptions, failed requests). */
interface Tab { page: Page, problems: string[] }

/** Open the page in a fresh browser context and wait until it is connected and has listed the users. */
async function openTab (browser: Browser, url: string): Promise<Tab> {
  const context = await browser.newContext({ viewport: { width: 960, height: 760 } })
  const page = await context.newPage()
  page.setDefaultTimeout(WAIT)
  const problems: string[] = []
  page.on('console', (message) => { if (message.type() === 'error') problems.push(`console.error: ${message.text()}`) })
  page.on('pageerror', (error) => problems.push(`uncaught: ${error.message}`))
  page.on('requestfailed', (request) => problems.push(`request failed: ${request.url()} (${request.failure()?.errorText ?? '?'})`))
  await page.goto(url)
  await page.locator('[data-testid="connection"][data-state="open"]').waitFor({ timeout: WAIT })
  await page.locator('[data-testid="users"][data-loaded="true"]').waitFor({ timeout: WAIT })
  return { page, problems }
}

/** The table row of `username` (as the page last stored it). */
function row (page: Page, username: string): Locator {
  return page.locator(`[data-testid="user-row"][data-username="${username}"]`)
}

/** Fill the create form through its labels (so they must be wired to the inputs) and submit. */
async function submitCreate (page: Page, data: { username: string, email?: string, password1: string, password2: string }): Promise<void> {
  await page.getByLabel('Username', { exact: true }).fill(data.username)
  await page.getByLabel('Email (optional)', { exact: true }).fill(data.email ?? '')
  await page.getByLabel('Password', { exact: true }).fill(data.password1)
  await page.getByLabel('Repeat password', { exact: true }).fill(data.password2)
  await page.getByRole('button', { name: 'Create user' }).click()
}

/** Wait until the element with `testid` shows text matching `text`, and return that text. */
async function shown (page: Page, testid: string, text: RegExp): Promise<string> {
  const locator = page.getByTestId(testid).filter({ hasText: text })
  await locator.waitFor({ state: 'visible', timeout: WAIT })
  return await locator.innerText()
}

async function screenshot (page: Page, name: string): Promise<string> {
  await mkdir(artifacts, { recursive: true })
  const path = fileURLToPath(new URL(name, artifacts))
  // Finite animations (a changed row's highlight) are fast-forwarded: the picture is stable.
  await page.screenshot({ path, fullPage: true, animations: 'disabled' })
  return path
}

if (problem === undefined) {
  t.test('two tabs: create, edit and delete in one show up live in the other; bad input shows field errors', async (t) => {
    const { base } = await startExample(t)
    const http = base.replace(/^ws/, 'http')

    // The page, its script and the bundled client, with their content types.
    for (const [path, type, marker] of [
      ['/', 'text/html', '<script type="module" src="/app.js">'],
      ['/app.js', 'text/javascript', "from '/client.js'"],
      ['/client.js', 'text/javascript', 'createClient']
    ] as const) {
      const response = await fetch(`${http}${path}`)
      t.equal(response.status, 200, `GET ${path}`)
      t.match(response.headers.get('content-type'), type, `GET ${path} is ${type}`)
      t.match(await response.text(), marker, `GET ${path} is the right file`)
    }

    const browser = await launch(t)
    const a = await openTab(browser, `${http}/`)
    const b = await openTab(browser, `${http}/`)
    t.equal(await a.page.getByTestId('connection-text').innerText(), 'Connected', 'the page shows the connection state')
    t.ok(await b.page.getByTestId('empty').isVisible(), 'an empty database says so')
    // Set in B's document now and read at the end: it survives only if B never reloads.
    await b.page.evaluate(() => { (window as unknown as { untouched: boolean }).untouched = true })

    // Create in A → the row appears in A, and live in B.
    await submitCreate(a.page, { username: 'alice', email: 'alice@example.com', password1: 'pw', password2: 'pw' })
    t.equal(await shown(a.page, 'create-message', /Created alice/), 'Created alice (id 1).', 'A says what it created')
    await row(a.page, 'alice').waitFor({ timeout: WAIT })
    await row(b.page, 'alice').waitFor({ timeout: WAIT })
    t.equal(await row(b.page, 'alice').getByTestId('user-email').innerText(), 'alice@example.com', 'B shows the row A created')
    t.equal(await a.page.getByLabel('Username', { exact: true }).inputValue(), '', 'the form is cleared after a create')

    // And the other way round: B creates, A sees it.
    await submitCreate(b.page, { username: 'carol', password1: 'pw2', password2: 'pw2' })
    await row(a.page, 'carol').waitFor({ timeout: WAIT })
    t.pass('A shows the row B created')

    // Edit in A (inline inputs, Save → patch) → B follows.
    await row(a.page, 'alice').getByRole('button', { name: 'Edit alice' }).click()
    await a.page.getByLabel('Username of user 1').fill('alicia')
    await a.page.getByLabel('Email of user 1').fill('alicia@example.org')
    await a.page.getByRole('button', { name: 'Save user 1' }).click()
    await row(a.page, 'alicia').locator('[data-testid="edit"]').waitFor({ timeout: WAIT })
    await row(b.page, 'alicia').waitFor({ timeout: WAIT })
    t.equal(await row(b.page, 'alicia').getByTestId('user-email').innerText(), 'alicia@example.org', 'B shows A\'s edit')
    t.equal(await row(b.page, 'alice').count(), 0, 'B no longer shows the old name')

    // Bad input in A: each 400's field errors appear next to their fields.
    await submitCreate(a.page, { username: 'bob', password1: 'one', password2: 'two' })
    t.equal(await shown(a.page, 'error-password2', /Passwords do not match/), 'Passwords do not match.', 'mismatched passwords: shown under Repeat password')
    t.equal(await a.page.getByLabel('Repeat password').getAttribute('aria-invalid'), 'true', 'the field is marked invalid')

    await submitCreate(a.page, { username: '', password1: '', password2: '' })
    t.equal(await shown(a.page, 'error-username', /blank/), 'This field may not be blank.', 'empty username: shown under Username')
    t.equal(await shown(a.page, 'error-password1', /blank/), 'This field may not be blank.', 'empty password: shown under Password')
    t.equal(await a.page.getByTestId('error-password2').filter({ hasText: /match/ }).count(), 0, 'the previous error is gone')

    await submitCreate(a.page, { username: 'carol', password1: 'pw', password2: 'pw' })
    t.equal(await shown(a.page, 'error-username', /already exists/), 'user with this username already exists.', 'duplicate username: shown under Username')
    t.equal(await a.page.getByTestId('error-password1').innerText(), '', 'only the duplicate username is reported')

    // A refused edit shows its error in the row; Cancel puts the row back as stored.
    await row(a.page, 'carol').getByRole('button', { name: 'Edit carol' }).click()
    await a.page.getByLabel('Username of user 2').fill('')
    await a.page.getByLabel('Email of user 2').press('Enter')
    t.equal(await shown(a.page, 'edit-error-username', /blank/), 'This field may not be blank.', 'a refused edit: shown under the input')
    // Both kinds of error on screen at once: the picture of A is taken now.
    const pictureA = await screenshot(a.page, 'browser-page-a.png')
    await a.page.getByRole('button', { name: 'Cancel editing user 2' }).click()
    await row(a.page, 'carol').getByTestId('edit').waitFor({ timeout: WAIT })
    t.equal(await row(b.page, 'bob').count() + await row(a.page, 'bob').count(), 0, 'refused input created nothing')

    // Delete in B → gone from A.
    await row(b.page, 'carol').getByRole('button', { name: 'Delete carol' }).click()
    await row(a.page, 'carol').waitFor({ state: 'detached', timeout: WAIT })
    await row(b.page, 'carol').waitFor({ state: 'detached', timeout: WAIT })
    t.pass('a delete in B removes the row from A')

    // Fixing the input that was refused works, and B sees it.
    await submitCreate(a.page, { username: 'bob', email: 'bob@example.com', password1: 'same', password2: 'same' })
    await row(b.page, 'bob').waitFor({ timeout: WAIT })
    t.equal(await a.page.getByTestId('error-username').innerText(), '', 'a successful create clears the errors')

    t.equal(await b.page.evaluate(() => (window as unknown as { untouched?: boolean }).untouched), true, 'B changed without a reload')
    t.comment(`screenshots: ${pictureA}, ${await screenshot(b.page, 'browser-page-b.png')}`)

    t.strictSame(a.problems, [], 'tab A logged no error')
    t.strictSame(b.problems, [], 'tab B logged no error')
    await browser.close()
  })

  t.test('npm run example serves the page: create a user, and the badge follows the connection', async (t) => {
    const { child, url } = await startServer(t)
    const browser = await launch(t)
    const tab = await openTab(browser, `${url.replace(/^ws/, 'http')}/`)

    await submitCreate(tab.page, { username: 'dave', email: 'dave@example.com', password1: 'pw', password2: 'pw' })
    await row(tab.page, 'dave').waitFor({ timeout: WAIT })
    t.equal(await row(tab.page, 'dave').getByTestId('user-email').innerText(), 'dave@example.com', 'the created user is listed')
    t.strictSame(tab.problems, [], 'the tab logged no error')

    // The server goes away: the page says it is reconnecting (the browser then logs the
    // refused connection attempts, which is why the errors were checked before).
    child.kill('SIGTERM')
    await tab.page.locator('[data-testid="connection"][data-state="reconnecting"]').waitFor({ timeout: WAIT })
    t.match(await tab.page.getByTestId('connection-text').innerText(), /reconnecting/, 'the badge says so')
    await browser.close()
  })
}
