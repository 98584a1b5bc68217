/**
 * The package as an app gets it from the registry: `npm pack` (which builds dist/ afresh
 * through the prepack script), the tarball installed into a scratch app outside the
 * repository next to fastify, TypeBox and MikroORM with its SQLite driver, the app
 * type-checked with `strict` and `skipLibCheck: false`, then run: the plugin registered on
 * Fastify with a SQLite entity, one WebSocket create + retrieve through
 * `fastify-ws-rest/client`, closed.
 *
 * The same app also holds the README, read at test time: it installs what the README's
 * install table gives for this MikroORM version (and, on 7, the `@types/better-sqlite3` it
 * names), and the ```ts block under `## Example` is written into it as it stands, but for
 * adjustments each asserted to apply — the listen port (0, the address printed, stdin's end
 * closing the app) and, on MikroORM 7, `orm.schema.updateSchema()` → `orm.schema.update()`
 * as the README's comment says. It type-checks with the rest, runs (its SQLite file in the
 * scratch folder), and the exchange shown under it is played over a real WebSocket: each
 * frame sent as written and each reply compared to the README's text, then the
 * `subscribe_list` frame of the next paragraph, whose socket must get the matching row's
 * changes as events and not the others'.
 *
 * What it guards against, each seen in an app that installed an earlier tarball:
 * - TypeBox as an exact-pinned dependency gave an app on another 0.34 release a second copy
 *   and dozens of type errors: the app here installs a different 0.34 release on purpose, and
 *   the tree must hold one copy only;
 * - dist/lib/layers/redis.d.ts importing ioredis's types broke `skipLibCheck: false` for
 *   every app without the optional ioredis: the app here has no ioredis, type-checks, and
 *   gets the "install ioredis" error only when it initialises a RedisLayer;
 * - the published types import `ws`, so @types/ws must come with the package;
 * - source maps pointing at lib/*.ts sources that were not shipped.
 *
 * Speed and the network: the install uses the machine's npm cache (`--prefer-offline`)
 * and `--ignore-scripts`, so the SQLite driver's native addon is not compiled again (over a
 * minute from source): sqlite3's (MikroORM 6) compiled `.node` file is copied from the
 * project's own node_modules, which must hold the same version; better-sqlite3 13
 * (MikroORM 7) ships its addon prebuilt in the package, so it needs no copy. Everything
 * else — the tarball, fastify, TypeBox, MikroORM's JavaScript — is a fresh install resolved
 * from the tarball's own package.json, so peers, dependency ranges, types and runtime
 * imports are all exercised as an app would get them; only sqlite3's compiled binary is the
 * project's. When the registry cannot be reached for
 * something not in the cache, the file is skipped with the reason, or fails under
 * REQUIRE_SERVICES=1 (CI).
 *
 * The MikroORM version is the one in the project's node_modules, so the same file checks
 * the MikroORM 7 leg of CI once it swaps @mikro-orm/* in node_modules.
 */
import { spawn } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { copyFile, mkdir, mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import WebSocket from 'ws'
import { within } from './helpers/async.js'

/** Bound for the whole file: a pack, a fresh install and two compiles on a loaded 2-core machine. */
t.setTimeout(300_000)

const root = fileURLToPath(new URL('..', import.meta.url))

// The package is the same whatever database the suite runs on, and the scratch app uses
// SQLite: it is checked once per MikroORM major, in that major's SQLite leg of CI.
if (process.env.DATABASE_URL !== undefined && process.env.DATABASE_URL !== '') {
  t.plan(0, 'the package is checked in the SQLite run of each MikroORM major')
  process.exit(0)
}

/**
 * A TypeBox 0.34 release other than the project's own devDependency (0.34.52): the app of
 * the issue. With TypeBox a peer, the plugin must use the app's copy.
 */
const APP_TYPEBOX = '0.34.41'

/** The app's types for better-sqlite3, MikroORM 7's SQLite driver (see the install below). */
const BETTER_SQLITE3_TYPES = '9.6.0'

/** The version of `name` installed in the project's node_modules. */
function projectVersion (name: string): string {
  return (JSON.parse(readFileSync(join(root, 'node_modules', name, 'package.json'), 'utf8')) as { version: string }).version
}

/**
 * The environment for child processes: without tap's variables (TAP*) and without the npm_* variables `npm test` exports — an inherited npm_config_*
 * could point the scratch app's install at the project.
 */
function childEnv (): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {}
  for (const [key, value] of Object.entries(process.env)) {
    if (key === 'NODE_OPTIONS' || /^(_?TAP|npm_)/i.test(key)) continue
    env[key] = value
  }
  // tap puts its process-info loader back into every child's NODE_OPTIONS; this keeps it
  // from recording V8 coverage of npm and tsc (as test/helpers/example-process.ts does).
  env._TAPJS_PROCESSINFO_COVERAGE_ = '0'
  return env
}

interface Ran { code: number | null, stdout: string, stderr: string, ms: number }

/** Run a command to its end (killed after `timeout` ms), collecting its output. */
async function run (command: string, args: string[], cwd: string, timeout = 180_000): Promise<Ran> {
  const started = Date.now()
  return await new Promise((resolve, reject) => {
    const child = spawn(command, args, { cwd, env: childEnv(), stdio: ['ignore', 'pipe', 'pipe'], timeout })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (chunk: Buffer) => { stdout += chunk.toString() })
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    child.on('error', reject)
    child.on('close', (code) => { resolve({ code, stdout, stderr, ms: Date.now() - started }) })
  })
}

/** What a command said, for an assertion's diagnostics. */
function said (ran: Ran): string {
  return `exit ${ran.code}\n${ran.stdout.slice(-4000)}\n${ran.stderr.slice(-4000)}`
}

interface InstalledPackage { name: string, version: string, dir: string }

/** Every package under `nodeModules`, at any depth (scoped and nested ones included). */
async function packagesIn (nodeModules: string): Promise<InstalledPackage[]> {
  const found: InstalledPackage[] = []
  const visit = async (dir: string): Promise<void> => {
    const manifest = join(dir, 'package.json')
    if (existsSync(manifest)) {
      const { name, version } = JSON.parse(await readFile(manifest, 'utf8')) as { name: string, version: string }
      found.push({ name, version, dir })
    }
    const nested = join(dir, 'node_modules')
    if (existsSync(nested)) await visitModules(nested)
  }
  const visitModules = async (modules: string): Promise<void> => {
    for (const entry of await readdir(modules, { withFileTypes: true })) {
      if (!entry.isDirectory() || entry.name.startsWith('.')) continue
      if (entry.name.startsWith('@')) {
        for (const scoped of await readdir(join(modules, entry.name), { withFileTypes: true })) {
          if (scoped.isDirectory()) await visit(join(modules, entry.name, scoped.name))
        }
      } else {
        await visit(join(modules, entry.name))
      }
    }
  }
  await visitModules(nodeModules)
  return found
}

/** Every file under `dir`, as paths relative to it. */
async function filesUnder (dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true })
  return entries.filter((e) => e.isFile()).map((e) => relative(dir, join(e.parentPath, e.name)))
}

/**
 * The scratch app: an entity, a typed route, the plugin, a create, a retrieve and a missing
 * retrieve over WebSocket, and a RedisLayer initialised without ioredis. It prints one JSON
 * line. MikroORM 7 renamed `schema.updateSchema()` to `schema.update()`.
 */
function appSource (ormMajor: number): string {
  const updateSchema = ormMajor >= 7 ? 'update' : 'updateSchema'
  return `import { defineEntity } from '@mikro-orm/core'
import { MikroORM } from '@mikro-orm/sqlite'
import { Type } from '@sinclair/typebox'
import Fastify from 'fastify'
import wsRest, { defineRoute, mixins, RedisLayer } from 'fastify-ws-rest'
import { createClient, WsRestError } from 'fastify-ws-rest/client'

const Note = defineEntity({
  name: 'Note',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    text: p.string()
  })
})
const NoteInput = Type.Object({ text: Type.String({ minLength: 1 }) })
const NotePublic = Type.Object({ id: Type.Integer(), text: Type.String() })

export const notes = defineRoute({
  entity: Note,
  schema: { create: NoteInput, update: NoteInput, response: NotePublic },
  actions: [mixins.create(), mixins.retrieve()]
})

const orm = await MikroORM.init({ dbName: ':memory:', entities: [Note] })
await orm.schema.${updateSchema}()
const app = Fastify()
app.addHook('onClose', async () => { await orm.close() })
await app.register(wsRest, { orm })
app.wsRest.route('/notes/', notes)
const address = await app.listen({ host: '127.0.0.1', port: 0 })

// Never called: it only has to fail to compile, which it does only if the route's types
// reach the client through the installed package (an \`any\` would accept the wrong field).
export function wrongField (client: ReturnType<typeof createClient<typeof notes>>): void {
  // @ts-expect-error txt is not a field of NoteInput
  void client.actions.create({ data: { txt: 'x' } })
}

const client = createClient<typeof notes>(address.replace(/^http/, 'ws') + '/notes/')
try {
  const created = await client.actions.create({ data: { text: 'hello' } })
  const id: number = created.id
  const retrieved = await client.actions.retrieve({ pk: id })
  const text: string = retrieved.text
  const missing = await client.actions.retrieve({ pk: id + 1 }).then(
    () => 'found',
    (err: unknown) => err instanceof WsRestError ? err.status : String(err)
  )
  // ioredis is not installed: the layer is made and typed without it, and says what to
  // install only when it is initialised.
  const layer = new RedisLayer({ url: 'redis://127.0.0.1:6379', redis: { connectTimeout: 1000 } })
  const redis = await layer.init(app.log).then(() => 'initialised', (err: Error) => err.message)
  await layer.close()
  console.log(JSON.stringify({ created, retrieved: { id: retrieved.id, text }, missing, redis }))
} finally {
  await client.close()
  await app.close()
}
`
}

const README = join(root, 'README.md')

/** The text of the first fenced block of language `lang` after `heading` in `markdown`. */
function fencedAfter (markdown: string, heading: string, lang: string): string | undefined {
  const at = markdown.indexOf(`\n${heading}\n`)
  if (at < 0) return undefined
  return new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```$', 'm').exec(markdown.slice(at))?.[1]
}

/** The README's install line for `ormVersion`: the Node cell and the packages, as written. */
function readmeInstall (markdown: string, ormVersion: string): Array<{ node: string, specs: string[] }> {
  const rows: Array<{ node: string, specs: string[] }> = []
  for (const line of markdown.split('\n')) {
    const cells = line.split('|').map((c) => c.trim())
    const command = /^`npm i (.+)`$/.exec(cells[3] ?? '')?.[1]
    if (command === undefined) continue
    const specs = command.split(/\s+/)
    if (specs.includes(`@mikro-orm/core@${ormVersion}`)) rows.push({ node: cells[1]!, specs })
  }
  return rows
}

/** The name in an install spec (`name@version` or `name`, scoped or not). */
function specName (spec: string): string {
  return spec.replace(/(?<=.)@[^@/]*$/, '')
}

/**
 * A change the test makes to the README's example: `from` must occur exactly once (or the
 * README changed under it, and the test says so), and is replaced by `to`.
 */
interface Adjustment { what: string, from: string, to: string }

/**
 * The README example's adjustments: a free port whose address the app prints (and a way to
 * close it from the test: the end of its stdin), and on MikroORM 7 the renamed
 * `schema.update()` that the README's comment gives.
 */
function readmeAdjustments (ormMajor: number): Adjustment[] {
  const adjustments: Adjustment[] = [{
    what: 'the listen on port 8000 → port 0, its address printed, stdin\'s end closing the app',
    from: 'await app.listen({ port: 8000 })',
    to: 'const address = await app.listen({ port: 0 }); console.log(JSON.stringify({ readmeAddress: address })); process.stdin.on(\'end\', () => { void app.close() }).resume()'
  }]
  if (ormMajor >= 7) {
    adjustments.push({
      what: 'MikroORM 7: orm.schema.updateSchema() → orm.schema.update(), as the README\'s comment says',
      from: 'await orm.schema.updateSchema()                   // MikroORM 7: orm.schema.update()',
      to: 'await orm.schema.update()'
    })
  }
  return adjustments
}

/** Count the occurrences of `needle` in `haystack`. */
function occurrences (haystack: string, needle: string): number {
  return haystack.split(needle).length - 1
}

/** A WebSocket whose messages are kept as the text that arrived, awaited in order. */
async function rawSocket (url: string): Promise<{ send: (text: string) => void, next: (what: string) => Promise<string>, close: () => Promise<void> }> {
  const socket = new WebSocket(url)
  const inbox: string[] = []
  const waiters: Array<(text: string) => void> = []
  socket.on('message', (data) => {
    const text = (data as Buffer).toString()
    const waiter = waiters.shift()
    if (waiter !== undefined) waiter(text)
    else inbox.push(text)
  })
  await within(new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve())
    socket.once('error', reject)
  }), `connecting to ${url}`)
  return {
    send: (text) => socket.send(text),
    next: async (what) => {
      const queued = inbox.shift()
      if (queued !== undefined) return queued
      let waiter!: (text: string) => void
      const arrived = new Promise<string>((resolve) => { waiter = resolve; waiters.push(waiter) })
      try {
        return await within(arrived, what)
      } finally {
        const i = waiters.indexOf(waiter)
        if (i >= 0) waiters.splice(i, 1)
      }
    },
    close: async () => {
      if (socket.readyState === WebSocket.CLOSED) return
      const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()))
      socket.close()
      await within(closed, 'the socket\'s close')
    }
  }
}

/** What a strict app compiles with: no skipLibCheck, so every .d.ts it reaches is checked. */
const SCRATCH_TSCONFIG = {
  compilerOptions: {
    target: 'ES2022',
    lib: ['ES2022'],
    types: ['node'],
    module: 'NodeNext',
    moduleResolution: 'NodeNext',
    strict: true,
    skipLibCheck: false,
    noEmitOnError: true,
    outDir: 'out',
    rootDir: 'src'
  },
  include: ['src']
}

/** npm's words for "the registry could not be reached" (and, offline, "not in the cache"). */
const NETWORK_FAILURE = /\b(ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|ENOTCACHED)\b/

interface Packed { work: string, tarball: string, files: string[] }

/** Pack into a fresh temporary folder (removed in teardown); prepack empties dist/ and builds it. */
async function packTarball (): Promise<Packed> {
  const work = await mkdtemp(join(tmpdir(), 'wsrest-package-'))
  t.teardown(async () => { await rm(work, { recursive: true, force: true }) })
  const pack = await run('npm', ['pack', '--json', '--pack-destination', work], root)
  t.comment(`npm pack (build included): ${pack.ms} ms`)
  if (pack.code !== 0) throw new Error(`npm pack failed: ${said(pack)}`)
  // The JSON report is the last thing on stdout, after the build script's own lines.
  const report = JSON.parse(pack.stdout.slice(pack.stdout.search(/^\[/m))) as Array<{ filename: string, files: Array<{ path: string }> }>
  return { work, tarball: join(work, report[0]!.filename), files: report[0]!.files.map((f) => f.path) }
}

// Both tests are declared at once (tap ends the file once it is idle), and share the pack.
const packing = packTarball()

t.test('the tarball holds the build, the docs and the example, and nothing else', async (t) => {
  const { files: packed } = await packing
  const pkg = JSON.parse(await readFile(join(root, 'package.json'), 'utf8')) as { exports: Record<string, Record<string, string>> }
  for (const [subpath, conditions] of Object.entries(pkg.exports)) {
    for (const target of Object.values(conditions)) {
      t.ok(packed.includes(target.replace(/^\.\//, '')), `export ${subpath} → ${target} is packed`)
    }
  }
  t.ok(packed.includes('README.md'), 'README.md')
  t.equal(packed.includes('LICENSE'), existsSync(join(root, 'LICENSE')), 'LICENSE when the repository has one')
  t.ok(packed.some((p) => /^docs\/.+\.md$/.test(p)), 'docs/')
  t.ok(packed.some((p) => /^example\/.+\.ts$/.test(p)), 'example/')
  t.ok(packed.includes('dist/lib/layers/redis.d.ts'), 'the Redis layer\'s declarations')
  const stray = packed.filter((p) => !/^(dist|docs|example)\//.test(p) && !['package.json', 'README.md', 'LICENSE'].includes(p))
  t.same(stray, [], 'no tests, sources, configs or lockfile')
})

t.test('the tarball installs into a fresh app, which type-checks and runs', async (t) => {
  const { work, tarball } = await packing
  const app = join(work, 'app')
  const ormVersion = projectVersion('@mikro-orm/core')
  await mkdir(join(app, 'src'), { recursive: true })
  await writeFile(join(app, 'package.json'), JSON.stringify({ name: 'scratch-app', private: true, type: 'module' }, null, 2))
  await writeFile(join(app, 'tsconfig.json'), JSON.stringify(SCRATCH_TSCONFIG, null, 2))
  const ormMajor = Number(ormVersion.split('.')[0])
  await writeFile(join(app, 'src', 'app.ts'), appSource(ormMajor))

  // What the README's install table gives for this MikroORM version: the tarball stands for
  // fastify-ws-rest, a package the README leaves unpinned gets the test's version (fastify
  // the project's, TypeBox another 0.34 release on purpose), a pinned one its pin.
  const markdown = await readFile(README, 'utf8')
  const rows = readmeInstall(markdown, ormVersion)
  t.equal(rows.length, 1, `the README has one install line for @mikro-orm/core@${ormVersion}`, { rows })
  const row = rows[0]
  if (row === undefined) return
  t.match(row.node, new RegExp(`\\b${process.versions.node.split('.')[0]}\\b`), `that line is for Node ${process.versions.node.split('.')[0]}, the one running`)
  t.same(row.specs.map(specName).sort(), ['@mikro-orm/core', '@mikro-orm/sqlite', '@sinclair/typebox', 'fastify', 'fastify-ws-rest'],
    'the README installs the plugin, fastify, TypeBox, MikroORM\'s core and SQLite driver')
  t.ok(row.specs.includes(`@mikro-orm/sqlite@${ormVersion}`), `the README pins @mikro-orm/sqlite@${ormVersion} with the core`)
  const unpinned: Record<string, string> = {
    'fastify-ws-rest': tarball,
    fastify: `fastify@${projectVersion('fastify')}`,
    '@sinclair/typebox': `@sinclair/typebox@${APP_TYPEBOX}`
  }
  const packages = [
    ...row.specs.map((spec) => unpinned[spec] ?? spec),
    `@types/node@${projectVersion('@types/node')}`
  ]
  // MikroORM 7's @mikro-orm/sqlite declarations import better-sqlite3, which ships no types
  // and does not bring @types/better-sqlite3: any app on it with skipLibCheck: false needs
  // them, with or without this plugin, and the README says so.
  if (ormMajor >= 7) {
    t.match(markdown, /On MikroORM 7 with SQLite[^]*?`npm i -D @types\/better-sqlite3`/, 'the README tells a MikroORM 7 app to install @types/better-sqlite3')
    packages.push(`@types/better-sqlite3@${BETTER_SQLITE3_TYPES}`)
  }

  // The README's example, as the README has it but for the asserted adjustments.
  const example = fencedAfter(markdown, '## Example', 'ts')
  t.type(example, 'string', 'the README has a ```ts block under ## Example')
  if (example === undefined) return
  let readmeSource = example
  // An adjustment that does not apply fails here, and the example is left out of the app
  // (the rest of the test goes on): unadjusted, it would listen on a fixed port.
  let adjusted = true
  for (const { what, from, to } of readmeAdjustments(ormMajor)) {
    adjusted = t.equal(occurrences(readmeSource, from), 1, `README example adjustment applies: ${what}`, { from }) && adjusted
    readmeSource = readmeSource.replace(from, to)
  }
  if (ormMajor >= 7) adjusted = t.notMatch(readmeSource, /updateSchema/, 'no MikroORM 6 schema call left for MikroORM 7') && adjusted
  if (adjusted) await writeFile(join(app, 'src', 'readme.ts'), readmeSource)

  const install = await run('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', '--ignore-scripts', ...packages], app)
  t.comment(`npm install (MikroORM ${ormVersion}): ${install.ms} ms`)
  if (install.code !== 0 && NETWORK_FAILURE.test(install.stderr) && !/ERESOLVE/.test(install.stderr)) {
    const reason = `the npm registry cannot be reached for the scratch app's install (${NETWORK_FAILURE.exec(install.stderr)?.[1]})`
    if (process.env.REQUIRE_SERVICES === '1') throw new Error(`${reason}; REQUIRE_SERVICES=1 makes this a failure\n${said(install)}`)
    t.plan(0, `${reason}; set REQUIRE_SERVICES=1 to fail instead`)
    return
  }
  t.equal(install.code, 0, 'npm install succeeds', { said: said(install) })
  if (install.code !== 0) return
  t.notMatch(install.stderr, /ERESOLVE|peer dep|conflicting peer|overriding peer/i, 'no peer dependency warnings')

  const ls = await run('npm', ['ls', '--all', '--json'], app)
  const tree = JSON.parse(ls.stdout) as { problems?: string[] }
  t.same(tree.problems ?? [], [], 'npm ls finds no missing, invalid or unmet peer dependencies')
  t.equal(ls.code, 0, 'npm ls exits 0')

  const installed = await packagesIn(join(app, 'node_modules'))
  const typeboxes = installed.filter((p) => p.name === '@sinclair/typebox')
  t.same(typeboxes.map((p) => p.version), [APP_TYPEBOX], 'one TypeBox in the tree: the app\'s')
  t.same(installed.filter((p) => p.name === 'ioredis'), [], 'no ioredis in the tree')
  const plugin = installed.find((p) => p.name === 'fastify-ws-rest')
  t.ok(plugin, 'fastify-ws-rest is installed')
  if (plugin === undefined) return

  // The driver's native addon, compiled by the project's install (see the file's comment),
  // unless the package ships one prebuilt for this platform, as better-sqlite3 13 does.
  for (const pkg of installed.filter((p) => existsSync(join(p.dir, 'binding.gyp')))) {
    const prebuilds = join(pkg.dir, 'prebuilds')
    const prebuilt = existsSync(prebuilds)
      ? (await readdir(prebuilds)).filter((f) => f.startsWith(process.platform) && f.endsWith(`-${process.arch}.node`))
      : []
    if (prebuilt.length > 0) {
      t.comment(`${pkg.name} ${pkg.version} ships its addon prebuilt (${prebuilt.join(', ')}): nothing to copy`)
      continue
    }
    t.equal(projectVersion(pkg.name), pkg.version, `the project has the same ${pkg.name} to take the compiled addon from`)
    const release = join(root, 'node_modules', pkg.name, 'build', 'Release')
    const addons = existsSync(release) ? (await readdir(release)).filter((f) => f.endsWith('.node')) : []
    t.not(addons.length, 0, `${pkg.name}: the project's copy has a compiled addon in build/Release`)
    await mkdir(join(pkg.dir, 'build', 'Release'), { recursive: true })
    for (const addon of addons) await copyFile(join(release, addon), join(pkg.dir, 'build', 'Release', addon))
  }

  // Every shipped source map has its sources inline, or shipped where it points.
  const shipped = await filesUnder(plugin.dir)
  const maps = shipped.filter((f) => f.endsWith('.map'))
  t.not(maps.length, 0, 'source maps are shipped')
  const unresolved: string[] = []
  for (const map of maps) {
    const { sources, sourcesContent } = JSON.parse(await readFile(join(plugin.dir, map), 'utf8')) as { sources: string[], sourcesContent?: Array<string | null> }
    sources.forEach((source, i) => {
      const inline = typeof sourcesContent?.[i] === 'string' && sourcesContent[i] !== ''
      if (!inline && !existsSync(resolve(plugin.dir, dirname(map), source))) unresolved.push(`${map}: ${source}`)
    })
  }
  t.same(unresolved, [], 'no source map points at a source the package lacks')

  const tsc = await run(process.execPath, [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], app)
  t.comment(`tsc (strict, skipLibCheck: false): ${tsc.ms} ms`)
  t.notMatch(tsc.stdout, /^src\/app\.ts/m, 'the app type-checks with skipLibCheck: false, without ioredis', { said: said(tsc) })
  t.notMatch(tsc.stdout, /^src\/readme\.ts/m, 'the README example type-checks with strict and skipLibCheck: false', { said: said(tsc) })
  t.equal(tsc.code, 0, 'tsc exits 0', { said: said(tsc) })
  if (tsc.code !== 0) return

  // Node 20 has a WebSocket global only behind a flag (22 on have it by default); the
  // client uses the global, as in a browser.
  const flags = typeof globalThis.WebSocket === 'undefined' ? ['--experimental-websocket'] : []
  const ran = await run(process.execPath, [...flags, join(app, 'out', 'app.js')], app, 60_000)
  t.comment(`the app's run: ${ran.ms} ms`)
  t.equal(ran.code, 0, 'the app runs and exits', { said: said(ran) })
  const lines = ran.stdout.trim().split('\n')
  const result = JSON.parse(lines[lines.length - 1] ?? 'null') as { created: unknown, retrieved: unknown, missing: unknown, redis: string } | null
  t.same(result?.created, { id: 1, text: 'hello' }, 'create over WebSocket answers the stored row')
  t.same(result?.retrieved, { id: 1, text: 'hello' }, 'retrieve finds it')
  t.equal(result?.missing, 404, 'retrieve of a missing row rejects with a WsRestError, status 404')
  t.match(result?.redis, /needs the ioredis package/, 'a RedisLayer asks for ioredis only when initialised')

  if (!adjusted) return
  await t.test('the README example runs and answers as the README shows', async (t) => {
    const exchange = (fencedAfter(markdown, '## Example', 'json') ?? '').split('\n').filter((line) => line !== '')
    t.ok(exchange.length >= 2 && exchange.length % 2 === 0, 'the README shows frames and their replies under the example', { exchange })
    const subscribeFrame = /`(\{"action":"subscribe_list"[^`]*\})`/.exec(markdown.slice(markdown.indexOf('\n## Example\n')))?.[1]
    t.type(subscribeFrame, 'string', 'the README shows a subscribe_list frame after the example')
    if (exchange.length < 2 || subscribeFrame === undefined) return

    const child = spawn(process.execPath, [join(app, 'out', 'readme.js')], { cwd: app, env: childEnv(), stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stderr.on('data', (chunk: Buffer) => { stderr += chunk.toString() })
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)))
    t.teardown(() => { if (child.exitCode === null && child.signalCode === null) child.kill() })
    const started = Date.now()
    const address = await within(new Promise<string>((resolve, reject) => {
      child.stdout.on('data', (chunk: Buffer) => {
        stdout += chunk.toString()
        const line = stdout.split('\n').find((l) => l.startsWith('{"readmeAddress":'))
        if (line !== undefined) resolve((JSON.parse(line) as { readmeAddress: string }).readmeAddress)
      })
      void exited.then((code) => reject(new Error(`the README example exited (${code}) before listening:\n${stdout}\n${stderr}`)))
    }), 'the README example\'s listening address', 60_000)
    t.comment(`the README example's start: ${Date.now() - started} ms`)
    const url = address.replace(/^http/, 'ws') + '/ws/users/'

    // Subscribed first, on a socket of its own: every later change of a matching row reaches it.
    const subscriber = await rawSocket(url)
    subscriber.send(subscribeFrame)
    const subscribed = JSON.parse(await subscriber.next('the subscribe_list reply')) as { response_status: number, request_id: unknown, errors: unknown[] }
    const subscription = (JSON.parse(subscribeFrame) as { request_id: unknown }).request_id
    t.same(subscribed, { errors: [], data: null, action: 'subscribe_list', response_status: 201, request_id: subscription }, 'subscribe_list answers 201')

    const client = await rawSocket(url)
    for (let i = 0; i < exchange.length; i += 2) {
      client.send(exchange[i]!)
      t.equal(await client.next(`the reply to ${exchange[i]}`), exchange[i + 1], `${exchange[i]} gets the README's reply, to the character`)
    }
    const replies = exchange.filter((_, i) => i % 2 === 1).map((line) => JSON.parse(line) as { response_status: number, data: { id: number } | null })
    t.same(replies.map((r) => r.response_status), [201, 400], 'the README shows a create that succeeds and one that fails validation')
    const row = replies[0]!.data!

    // The matching row's creation was an event; a row that never matches is none, and the
    // matching row's next change is the next event.
    const event = async (what: string): Promise<unknown> => JSON.parse(await subscriber.next(what))
    t.same(await event('the create event'), { errors: [], data: row, action: 'create', response_status: 201, request_id: subscription },
      'the subscriber gets the matching row\'s creation as an event')
    client.send(JSON.stringify({ action: 'create', request_id: 3, data: { username: 'bob' } }))
    t.match(JSON.parse(await client.next('the reply to bob\'s create')), { response_status: 201, data: { username: 'bob' } }, 'a row that does not match the filter is created')
    client.send(JSON.stringify({ action: 'patch', request_id: 4, pk: row.id, data: { email: 'alice@example.org' } }))
    const patched = { ...row, email: 'alice@example.org' }
    t.same(JSON.parse(await client.next('the reply to the patch')), { errors: [], data: patched, action: 'patch', response_status: 200, request_id: 4 }, 'the matching row is patched')
    t.same(await event('the update event'), { errors: [], data: patched, action: 'update', response_status: 200, request_id: subscription },
      'the next event is the matching row\'s update: the other row\'s creation sent none')

    await client.close()
    await subscriber.close()
    child.stdin.end()
    t.equal(await within(exited, 'the README example\'s exit after app.close()', 30_000), 0, 'the README example closes and exits 0', { stdout: stdout.slice(-4000), stderr: stderr.slice(-4000) })
  })
})
