/**
 * The action mixins, DCRF's building blocks: each returns the action(s) it adds to a route.
 */
export { create } from './create.js'
export { list } from './list.js'
export { retrieve } from './retrieve.js'
export { update } from './update.js'
export { patch } from './patch.js'
export { destroy as delete, destroy } from './delete.js'
export { paginatedList } from './paginated-list.js'
export { streamedList } from './streamed-list.js'
export { cursorList } from './cursor-list.js'
export type { MixinOptions } from './common.js'
export { subscribeInstance, subscribeList } from '../observer/mixins.js'
