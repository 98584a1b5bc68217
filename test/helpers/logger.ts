/**
 * A real (pino) app logger that keeps what it writes, for tests that assert on log lines.
 * Needs no service: helpers/redis.ts re-exports it for the Redis tests.
 */
import type { FastifyBaseLogger } from 'fastify'
import Fastify from 'fastify'

/** One log line, as pino wrote it. */
export interface LogLine { level: number, msg: string, [key: string]: unknown }

/** pino's level numbers. */
export const LEVEL = { debug: 20, info: 30, warn: 40, error: 50 } as const

/** A real (pino) app logger at debug level that keeps what it writes, and lets a test wait for a line. */
export interface RecordingLogger {
  log: FastifyBaseLogger
  lines: LogLine[]
  /** The lines at `level` whose message contains `text`. */
  find: (level: number, text: string) => LogLine[]
  /** Resolves with the first line (already written or to come) matching `test`. */
  next: (test: (line: LogLine) => boolean) => Promise<LogLine>
}

export function recordingLogger (): RecordingLogger {
  const lines: LogLine[] = []
  const waiting = new Set<{ test: (line: LogLine) => boolean, resolve: (line: LogLine) => void }>()
  const app = Fastify({
    logger: {
      level: 'debug',
      stream: {
        write: (text: string) => {
          const line = JSON.parse(text) as LogLine
          lines.push(line)
          for (const waiter of waiting) {
            if (waiter.test(line)) { waiting.delete(waiter); waiter.resolve(line) }
          }
        }
      }
    }
  })
  return {
    log: app.log,
    lines,
    find: (level, text) => lines.filter((line) => line.level === level && line.msg.includes(text)),
    next: async (test) => {
      const seen = lines.find(test)
      if (seen !== undefined) return seen
      return await new Promise((resolve) => { waiting.add({ test, resolve }) })
    }
  }
}
