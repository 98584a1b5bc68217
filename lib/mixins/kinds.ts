/**
 * The built-in mixins' wires by the kind names they had while the wire types were a
 * closed union (`MixinWire<'create', Response>`), kept so code naming them still compiles.
 * A mixin now declares its own wire beside its behaviour (an `ActionWire`, lib/wire.ts),
 * which is how an app's mixin is typed too.
 */
import type { TSchema } from '@sinclair/typebox'
import type { SubscribeInstanceWire, SubscribeListWire, UnsubscribeInstanceWire, UnsubscribeListWire } from '../observer/mixins.js'
import type { CreateWire } from './create.js'
import type { CursorListWire } from './cursor-list.js'
import type { DeleteWire } from './delete.js'
import type { ListWire } from './list.js'
import type { PaginatedListWire } from './paginated-list.js'
import type { PatchWire } from './patch.js'
import type { RetrieveWire } from './retrieve.js'
import type { ListCancelWire, StreamedListWire } from './streamed-list.js'
import type { UpdateWire } from './update.js'

/** The built-in mixins' wires, by kind. */
interface BuiltInWires<Response extends TSchema | undefined> {
  create: CreateWire<Response>
  list: ListWire<Response>
  retrieve: RetrieveWire<Response>
  update: UpdateWire<Response>
  patch: PatchWire<Response>
  delete: DeleteWire
  paginated_list: PaginatedListWire<Response>
  cursor_list: CursorListWire<Response>
  streamed_list: StreamedListWire<Response>
  list_cancel: ListCancelWire
  subscribe_instance: SubscribeInstanceWire<Response>
  unsubscribe_instance: UnsubscribeInstanceWire
  subscribe_list: SubscribeListWire<Response>
  unsubscribe_list: UnsubscribeListWire
}

/** The built-in mixins, by the shape of what they take and answer. */
export type MixinKind = keyof BuiltInWires<undefined>

/** A built-in mixin's wire by its kind, and the response schema it was given in place of the route's (if any). */
export type MixinWire<K extends MixinKind, Response extends TSchema | undefined = undefined> = BuiltInWires<Response>[K]
