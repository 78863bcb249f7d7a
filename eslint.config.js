import neostandard from 'neostandard'

export default [
  ...neostandard({ ts: true, ignores: ['dist/**', 'coverage/**', '.tap/**', 'screenshots/**', 'bench/results/**'] }),
  {
    rules: {
      '@typescript-eslint/no-explicit-any': 'off'
    }
  }
]
