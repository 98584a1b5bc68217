/**
 * Command-line flags of the bench and soak scripts: `--name value`, `--name=value`, or a
 * bare `--name` (true). An unknown flag fails at once, naming the known ones.
 */
export function parseFlags (argv: string[], known: readonly string[]): Map<string, string> {
  const flags = new Map<string, string>()
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (!arg.startsWith('--')) throw new Error(`unexpected argument ${arg}`)
    const eq = arg.indexOf('=')
    if (eq > 0) flags.set(arg.slice(2, eq), arg.slice(eq + 1))
    else if (argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) flags.set(arg.slice(2), argv[++i]!)
    else flags.set(arg.slice(2), 'true')
  }
  for (const key of flags.keys()) if (!known.includes(key)) throw new Error(`unknown flag --${key} (known: ${known.map((k) => '--' + k).join(' ')})`)
  return flags
}
