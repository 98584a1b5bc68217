/**
 * Open-file limits: 50,000 sockets need more file descriptors than a default soft limit
 * (often 1,024, here maybe 20,000) allows, in the servers and in the load generator.
 *
 * Node cannot call setrlimit, so a process is started through `sh -c 'ulimit -n …; exec …'`:
 * it asks for WANTED_OPEN_FILES, else takes the hard limit. Raising the hard limit itself
 * takes CAP_SYS_RESOURCE (root outside a container, or `docker run --ulimit nofile=…`).
 */
import { readFileSync } from 'node:fs'

export const WANTED_OPEN_FILES = 200_000

/** This process's open-file limits, from /proc/self/limits (Infinity for unlimited). */
export function openFileLimits (): { soft: number, hard: number } {
  try {
    const line = /^Max open files\s+(\S+)\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))
    const value = (v: string | undefined): number => v === undefined || v === 'unlimited' ? Infinity : Number(v)
    return { soft: value(line?.[1]), hard: value(line?.[2]) }
  } catch {
    return { soft: NaN, hard: NaN }
  }
}

/** `command args…` wrapped so that it runs with the open-file limit raised as far as allowed. */
export function withOpenFiles (command: string, args: string[]): [string, string[]] {
  return ['sh', ['-c', `ulimit -n ${WANTED_OPEN_FILES} 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$@"`, 'sh', command, ...args]]
}

/** File descriptors a process holding `sockets` sockets needs, with room for the rest. */
export const filesFor = (sockets: number): number => sockets + 1_000
