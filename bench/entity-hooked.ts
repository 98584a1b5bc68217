/**
 * The entities, schemas and seeding of the ops that go through route hooks, shared by both
 * benchmark servers and the load generator (which checks replies against them):
 *
 * - `create_hooked` / `create_scrypt`: a sign-up. The client sends `{username, email,
 *   password1}`; the server stores `password` as a hash of `password1` (cheap SHA-256 with a
 *   fixed salt, or scrypt), and answers `{id, username, email}`.
 * - `list_scoped`: the first page of a list scoped to the connection's owner, taken from the
 *   upgrade URL (`/ws/tasks/?owner=3`), as an app scopes a list to its user.
 */
import { defineEntity, type InferEntity, type MikroORM } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import { createHash, scrypt } from 'node:crypto'

export const BenchUser = defineEntity({
  name: 'BenchUser',
  // Not `user`: a reserved word in PostgreSQL.
  tableName: 'bench_user',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    username: p.string().unique(),
    email: p.string(),
    password: p.string()
  })
})
export type BenchUser = InferEntity<typeof BenchUser>

/** `data` of a sign-up: what a registration form sends. */
export const UserCreate = Type.Object({
  username: Type.String({ minLength: 1, maxLength: 150 }),
  email: Type.String({ minLength: 3, maxLength: 254 }),
  password1: Type.String({ minLength: 8, maxLength: 128 })
})
/** A user as replies show it: never the password. */
export const UserPublic = Type.Object({ id: Type.Integer(), username: Type.String(), email: Type.String() })
export interface UserView { id: number, username: string, email: string }
export interface SignUp { username: string, email: string, password1: string }

/** A fixed salt: the hash must be deterministic so the stored rows can be checked. */
const SALT = 'wsrest-bench-salt'

/**
 * The `create_hooked` hash: one SHA-256, a few microseconds, so the op measures the
 * mapping hook and the write, not CPU-bound crypto. Not a password hash to copy.
 */
export function cheapHash (password: string): string {
  return 'sha256$' + createHash('sha256').update(SALT).update(password).digest('hex')
}

/** scrypt's defaults (N = 16384, r = 8, p = 1), 32 bytes: what a real sign-up pays, on libuv's thread pool. */
export async function scryptHash (password: string): Promise<string> {
  const key = await new Promise<Buffer>((resolve, reject) => {
    scrypt(password, SALT, 32, (err, derived) => { if (err === null) resolve(derived); else reject(err) })
  })
  return 'scrypt$' + key.toString('hex')
}

/** Which hash a sign-up route uses. */
export type HashKind = 'sha256' | 'scrypt'
export const HASHES: Record<HashKind, (password: string) => string | Promise<string>> = { sha256: cheapHash, scrypt: scryptHash }

/** The row a sign-up stores: `password1` becomes `password`, hashed. */
export async function signUpRow (data: SignUp, hash: HashKind): Promise<{ username: string, email: string, password: string }> {
  return { username: data.username, email: data.email, password: await HASHES[hash](data.password1) }
}

// ---------------------------------------------------------------------------- scoped list

export const Task = defineEntity({
  name: 'Task',
  tableName: 'task',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    owner: p.integer().index(),
    title: p.string(),
    done: p.boolean()
  })
})
export type Task = InferEntity<typeof Task>

export const TaskPublic = Type.Object({ id: Type.Integer(), owner: Type.Integer(), title: Type.String(), done: Type.Boolean() })
export interface TaskView { id: number, owner: number, title: string, done: boolean }

/** Owners the tasks are spread over; connection `c` of a run lists owner `c % SCOPES + 1`'s. */
export const SCOPES = 10
/** Fewest tasks seeded: every owner has at least two pages of 20. */
export const MIN_TASKS = SCOPES * 40

/** Seeded task `id`: round-robin owners, so each owner's rows interleave with the others' in the table. */
export function seededTask (id: number): TaskView {
  return { id, owner: (id - 1) % SCOPES + 1, title: `task ${id}`, done: id % 3 === 0 }
}

/** How many of `tasks` seeded tasks `owner` has. */
export const ownerTaskCount = (owner: number, tasks: number): number => owner > tasks ? 0 : Math.floor((tasks - owner) / SCOPES) + 1

/** What a reset of the hooked ops' tables leaves. */
export interface HookedSeed {
  /** Tasks seeded, ids 1..tasks (see `seededTask`). */
  tasks: number
}

export const HOOKED_ENTITIES = [BenchUser, Task]

/** Whether `orm` runs on PostgreSQL (else SQLite). */
export const isPostgres = (orm: MikroORM): boolean => /postgre/i.test(orm.em.getPlatform().constructor.name)

/** Empty the users, seed max(rows, MIN_TASKS) tasks with ids 1.. (one INSERT … SELECT). */
export async function seedHooked (orm: MikroORM, rows: number): Promise<HookedSeed> {
  const connection = orm.em.getConnection()
  if (isPostgres(orm)) {
    await connection.execute('truncate table bench_user, task restart identity')
  } else {
    await connection.execute('delete from bench_user')
    await connection.execute('delete from task')
  }
  const tasks = Math.max(rows, MIN_TASKS)
  // The expressions give the same values as seededTask, on SQLite and PostgreSQL alike.
  await connection.execute(
    `insert into task (id, owner, title, done)
     with recursive c(x) as (select 1 union all select x + 1 from c where x < ${tasks})
     select x, ((x - 1) % ${SCOPES}) + 1, 'task ' || x, x % 3 = 0 from c`)
  const [count] = await connection.execute<Array<{ n: number }>>('select cast(count(*) as integer) as n from task')
  if (count?.n !== tasks) throw new Error(`seeding gave ${count?.n} tasks, expected ${tasks}`)
  return { tasks }
}

/**
 * `/__bench/verify`: of the last `sample` users signed up, those whose stored password is
 * not the hash of what their sign-up sent (`secret of <username>`): the reply alone cannot show
 * that the hook mapped `password1`. A sample, as scrypt takes tens of milliseconds each.
 */
export async function badPasswords (orm: MikroORM, hash: HashKind, sample: number): Promise<{ users: number, checked: number, bad: string[] }> {
  const em = orm.em.fork()
  const users = await em.find(BenchUser, {}, { orderBy: { id: 'desc' }, limit: sample })
  const total = await em.count(BenchUser, {})
  const bad: string[] = []
  for (const user of users) {
    if (user.password !== await HASHES[hash](signUpPassword(user.username))) bad.push(user.username)
  }
  return { users: total, checked: users.length, bad: bad.slice(0, 10) }
}

/** The password the load generator signs `username` up with. */
export const signUpPassword = (username: string): string => `secret of ${username}`
