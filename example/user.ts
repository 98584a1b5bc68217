/**
 * The example's `User` entity and its TypeBox schemas: what a client may send to create
 * or update a user, and the public shape every reply carries (the password hash never
 * leaves the server).
 */
import { Cascade, defineEntity, type InferEntity } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import { Post } from './post.js'

export const User = defineEntity({
  name: 'User',
  tableName: 'user',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    username: p.string().length(150).unique(),
    email: p.string().length(254).default(''),
    // Hidden: MikroORM's serialization and fastify-ws-rest's change events leave it out.
    password: p.string().length(255).hidden(),
    // Deleting a user deletes their posts through the ORM, so each removed post publishes its delete.
    posts: () => p.oneToMany(Post).mappedBy('author').cascade(Cascade.REMOVE)
  })
})
export type User = InferEntity<typeof User>

const username = Type.String({ minLength: 1, maxLength: 150 })
/** An email address, or empty (as Django's `EmailField(blank=True)`). */
const email = Type.String({
  maxLength: 254,
  pattern: '^$|^[^\\s@]+@[^\\s@]+\\.[^\\s@]+$',
  errorMessage: 'Enter a valid email address.'
})

/** `data` of create: the password twice, as a sign-up form sends it. */
export const UserCreate = Type.Object({
  username,
  email: Type.Optional(email),
  password1: Type.String({ minLength: 1, trim: false }),
  password2: Type.String({ minLength: 1, trim: false })
})

/** `data` of update (all of it; `email` has a default, so as in DRF it may be left out and keeps its value) and patch (any subset). */
export const UserUpdate = Type.Object({ username, email: Type.Optional(email) })

/** A user as every reply shows it. */
export const UserPublic = Type.Object({
  id: Type.Integer(),
  username: Type.String(),
  email: Type.String()
})
