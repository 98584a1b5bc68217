/**
 * The example's relations: `Tag`, and `Post` written by a `User` (many-to-one) and
 * carrying tags (many-to-many). Every reply and event shows a post with its author and
 * tags nested — the author as `{id, username}` only, never the email or password hash.
 */
import { defineEntity, type InferEntity } from '@mikro-orm/core'
import { Type } from '@sinclair/typebox'
import { User } from './user.js'

export const Tag = defineEntity({
  name: 'Tag',
  tableName: 'tag',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    name: p.string().length(50).unique(),
    // The inverse side: deleting a tag takes it off each post, which publishes that post's update.
    posts: () => p.manyToMany(Post).mappedBy('tags')
  })
})
export type Tag = InferEntity<typeof Tag>

export const Post = defineEntity({
  name: 'Post',
  tableName: 'post',
  properties: (p) => ({
    id: p.integer().primary().autoincrement(),
    title: p.string().length(200),
    body: p.text().default(''),
    author: () => p.manyToOne(User),
    tags: () => p.manyToMany(Tag).owner()
  })
})
export type Post = InferEntity<typeof Post>

/** `data` of a tag's create. */
export const TagCreate = Type.Object({ name: Type.String({ minLength: 1, maxLength: 50 }) })

/** A tag as every reply shows it. */
export const TagPublic = Type.Object({ id: Type.Integer(), name: Type.String() })

/**
 * `data` of a post's create and update: related rows by primary key (`"author": 3`,
 * `"tags": [1, 2]`). `body` and `tags` may be left out of a full update: they keep their
 * values, as DRF's fields that are not required do.
 */
export const PostInput = Type.Object({
  title: Type.String({ minLength: 1, maxLength: 200 }),
  body: Type.Optional(Type.String()),
  author: Type.Integer(),
  tags: Type.Optional(Type.Array(Type.Integer()))
})

/** A post as every reply and event shows it: author and tags nested, tags ordered by id. */
export const PostPublic = Type.Object({
  id: Type.Integer(),
  title: Type.String(),
  body: Type.String(),
  author: Type.Object({ id: Type.Integer(), username: Type.String() }),
  tags: Type.Array(TagPublic)
})
