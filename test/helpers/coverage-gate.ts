/**
 * The coverage gate of `npm test`, run after tap: per area (lib/, client/, index.ts), the
 * lines, branches and functions the test processes covered, each against a floor; below
 * one, or an area's file missing from the report, fails the run.
 *
 * tap's own thresholds (`lines`, `branches`… in package.json's "tap") judge only the sum of
 * every file, where a shrinking client/ hides behind lib/; so tap reports (package.json:
 * `"allow-incomplete-coverage": true`, a json-summary beside the text table) and this
 * script decides. It reads `.tap/report/coverage-summary.json`, which the run just wrote.
 *
 * The floors sit a few points below what the full suite measures on SQLite (PostgreSQL
 * covers some other branches, and is measured a little differently): lower them only with
 * a reason, raise them as tests are added.
 *
 * Run by hand after a full `tap` run: `node --import tsx test/helpers/coverage-gate.ts`.
 */
import { readFileSync, readdirSync } from 'node:fs'
import { join, relative, resolve, sep } from 'node:path'
import ts from 'typescript'

type Metric = 'lines' | 'branches' | 'functions'
interface Counts { total: number, covered: number }
type FileSummary = Record<Metric | 'statements', Counts & { pct: number | string }>

/** The floors, in %: a little below the full SQLite run's figures. */
const FLOORS: Record<string, Record<Metric, number>> = {
  // Measured (SQLite, 2026-12): lines 97.72, branches 89.04, functions 96.67.
  'lib/': { lines: 94, branches: 85, functions: 93 },
  // Measured: lines 96.89, branches 86.53, functions 96.07.
  'client/': { lines: 93, branches: 82, functions: 92 },
  // Measured: lines 98.75, branches 92 (23 of 25), functions 100.
  'index.ts': { lines: 95, branches: 84, functions: 95 }
}
const METRICS: Metric[] = ['lines', 'branches', 'functions']

const root = resolve(import.meta.dirname, '..', '..')
const summaryFile = join(root, '.tap', 'report', 'coverage-summary.json')

let summary: Record<string, FileSummary>
try {
  summary = JSON.parse(readFileSync(summaryFile, 'utf8')) as Record<string, FileSummary>
} catch (err) {
  console.error(`coverage gate: cannot read ${relative(root, summaryFile)} (${(err as Error).message}); run the whole suite with tap first`)
  process.exit(1)
}

/** The area a project file belongs to, or undefined (test/, example/, bench/ are not measured). */
function areaOf (file: string): string | undefined {
  const path = relative(root, file).split(sep).join('/')
  return Object.keys(FLOORS).find((area) => area.endsWith('/') ? path.startsWith(area) : path === area)
}

/** Whether a file compiles to no code at all (types only): no process ever loads it, so it has no coverage. */
function typesOnly (file: string): boolean {
  const output = ts.transpileModule(readFileSync(join(root, file), 'utf8'), {
    compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022, verbatimModuleSyntax: false, removeComments: true }
  }).outputText
  return output.replace(/export\s*\{\s*\};?/g, '').replace(/\/\/# sourceMappingURL=.*/g, '').trim() === ''
}

/**
 * The .ts files of an area on disk with code in them: each must be in the report (a file no
 * test loads would be missing from it, not shown at 0%).
 */
function filesOf (area: string): string[] {
  if (!area.endsWith('/')) return [area]
  const out: string[] = []
  const walk = (dir: string): void => {
    for (const entry of readdirSync(join(root, dir), { withFileTypes: true })) {
      const path = `${dir}${entry.name}`
      if (entry.isDirectory()) walk(`${path}/`)
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts') && !typesOnly(path)) out.push(path)
    }
  }
  walk(area)
  return out
}

const totals = new Map<string, Record<Metric, Counts>>()
const reported = new Set<string>()
for (const [file, counts] of Object.entries(summary)) {
  if (file === 'total') continue
  const area = areaOf(file)
  if (area === undefined) continue
  reported.add(relative(root, file).split(sep).join('/'))
  const sums = totals.get(area) ?? { lines: { total: 0, covered: 0 }, branches: { total: 0, covered: 0 }, functions: { total: 0, covered: 0 } }
  for (const metric of METRICS) {
    sums[metric].total += counts[metric].total
    sums[metric].covered += counts[metric].covered
  }
  totals.set(area, sums)
}

const failures: string[] = []
const pct = (c: Counts): number => c.total === 0 ? 100 : Math.floor(10_000 * c.covered / c.total) / 100
console.log('coverage gate (% covered / floor):')
for (const [area, floors] of Object.entries(FLOORS)) {
  const missing = filesOf(area).filter((file) => !reported.has(file))
  if (missing.length > 0) failures.push(`${area}: not in the coverage report: ${missing.join(', ')}`)
  const sums = totals.get(area)
  if (sums === undefined) continue
  const cells = METRICS.map((metric) => {
    const value = pct(sums[metric])
    if (value < floors[metric]) failures.push(`${area} ${metric} ${value}% is below its floor of ${floors[metric]}%`)
    return `${metric} ${value.toFixed(2)} / ${floors[metric]}`
  })
  console.log(`  ${area.padEnd(9)} ${cells.join(', ')}`)
}
if (failures.length > 0) {
  for (const failure of failures) console.error(`coverage gate: ${failure}`)
  process.exit(1)
}
console.log('coverage gate: passed')
