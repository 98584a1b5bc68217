/** Run `fn` and return what it throws (or fail the test if it does not). */
export function thrownBy (fn: () => unknown): { code?: string, message: string } {
  try {
    fn()
  } catch (err) {
    return err as { code?: string, message: string }
  }
  throw new Error('expected a throw')
}
