/**
 * Subscriptions are memory the client makes the server hold, and each is tested against
 * every change of its groups: beside a socket's own cap (`maxSubscriptions`), every
 * subscription — live, or parked for resuming — counts against its client's budget (the
 * principal: the app's, the user's, else the address) and the process's.
 */
import createError from '@fastify/error'
import type { FastifyRequest } from 'fastify'

/**
 * Whose budget a connection's subscriptions count against: its principal (the one
 * resuming files keys under, resume.ts `resumePrincipal`), else its address. Unlike a
 * resume key, a budget hands nobody anything: an address shared behind a NAT or a proxy
 * only makes its connections share one budget, so it is good enough to bound what an
 * anonymous client makes the server hold.
 */
export function clientOf (request: FastifyRequest, principal: string | undefined): string {
  return principal ?? `ip:${request.ip}`
}

/** 429: the client (all its sockets together) holds as many subscriptions as it may. */
export const TooManyClientSubscriptions = createError<[number]>(
  'FST_WSREST_TOO_MANY_CLIENT_SUBSCRIPTIONS',
  'Too many subscriptions: a client may hold %s on all its connections together.',
  429
)

/** 429: the process holds as many subscriptions as it may. */
export const TooManyProcessSubscriptions = createError<[number]>(
  'FST_WSREST_TOO_MANY_PROCESS_SUBSCRIPTIONS',
  'Too many subscriptions on this server: it holds %s.',
  429
)

export class SubscriptionBudget {
  private readonly byClient = new Map<string, number>()
  private total = 0

  constructor (private readonly perClient: number, private readonly inAll: number) {}

  /** Count one more subscription of `client`, or throw the 429 of the budget it would exceed. */
  take (client: string): void {
    const held = this.byClient.get(client) ?? 0
    if (held >= this.perClient) throw new TooManyClientSubscriptions(this.perClient)
    if (this.total >= this.inAll) throw new TooManyProcessSubscriptions(this.inAll)
    this.byClient.set(client, held + 1)
    this.total++
  }

  /** One subscription of `client` is gone. */
  give (client: string): void {
    const held = (this.byClient.get(client) ?? 1) - 1
    if (held > 0) this.byClient.set(client, held)
    else this.byClient.delete(client)
    this.total = Math.max(0, this.total - 1)
  }

  /** Subscriptions held by `client` (0 when none), and in all. */
  held (client?: string): number {
    return client === undefined ? this.total : this.byClient.get(client) ?? 0
  }
}
