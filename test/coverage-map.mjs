// Coverage is measured for the library only: examples and dist/ are exercised, not measured.
import { readdirSync } from 'node:fs'

const files = readdirSync('lib', { recursive: true })
  .filter((file) => file.endsWith('.ts'))
  .map((file) => `lib/${file}`)

export default function coverageMap () {
  return files
}
