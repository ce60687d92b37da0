// Lint: typescript-eslint's recommended rules plus the type-aware ones that catch real
// bugs in async code (floating and misused promises), in tests too. Generated code and
// build output are not linted. Import cycles are checked by madge in `pnpm lint`.
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['**/dist/**', '**/node_modules/**', '**/src/generated/**', '**/models-built/**', 'coverage/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['**/*.ts'],
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'separate-type-imports' }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
  {
    // Tests are outside the packages' build tsconfigs; tsconfig.tests.json (which `pnpm lint`
    // type-checks) gives them their types, so the same type-aware rules hold for them.
    files: ['**/*.test.ts'],
    languageOptions: {
      parserOptions: { projectService: false, project: ['./tsconfig.tests.json'], tsconfigRootDir: import.meta.dirname },
    },
  },
  {
    files: ['*.config.ts'],
    ...tseslint.configs.disableTypeChecked,
  },
  {
    files: ['**/*.js', '**/*.mjs'],
    languageOptions: { globals: { process: 'readonly', console: 'readonly', URL: 'readonly', Buffer: 'readonly' } },
  },
);
