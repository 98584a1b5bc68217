/**
 * What differs between the databases behind MikroORM, decided once from its platform
 * (at route registration, or when the observer starts), so no module sniffs the driver on its own.
 */
import type { Platform } from '@mikro-orm/core'

/** The database features the plugin adapts to. */
export interface Dialect {
  /** SQL function giving the 1-based position of a substring: `strpos` (PostgreSQL) or `instr` (SQLite, MySQL). */
  readonly position: 'strpos' | 'instr'
  /**
   * Whether `SELECT … FOR UPDATE` locks rows. SQLite has no row locks (a writer locks the
   * whole database), and knex only warns and ignores the clause there.
   */
  readonly rowLocks: boolean
  /**
   * Whether an error inside a transaction aborts it (PostgreSQL): its later COMMIT then
   * quietly rolls back, though knex reports success. SQLite carries on and commits.
   */
  readonly errorsAbortTransactions: boolean
  /**
   * Whether an integer column holds only its declared width (PostgreSQL: a parameter out of an
   * `integer` column's range is an error, 22003, not a value matching no row). SQLite stores
   * any 64-bit integer in any integer column.
   */
  readonly sizedIntegers: boolean
  /**
   * The database's `lower()`, for deciding `$contains` and search in memory exactly as SQL
   * does: SQLite's folds ASCII letters only ("Ü" stays "Ü"), PostgreSQL's all of Unicode.
   */
  readonly lower: (text: string) => string
}

const asciiLower = (text: string): string => text.replace(/[A-Z]+/g, (letters) => letters.toLowerCase())
const unicodeLower = (text: string): string => text.toLowerCase()

/** The dialect of a MikroORM platform. */
export function dialectOf (platform: Platform): Dialect {
  const name = platform.constructor.name
  return {
    position: /postgre/i.test(name) ? 'strpos' : 'instr',
    rowLocks: !/sqlite/i.test(name),
    errorsAbortTransactions: /postgre/i.test(name),
    sizedIntegers: !/sqlite/i.test(name),
    lower: /sqlite/i.test(name) ? asciiLower : unicodeLower
  }
}
