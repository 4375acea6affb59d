// Builds the page edge serves. Everything is bundled: the page fetches nothing but its own
// files, the HTTP API and the WebSocket (edge's Content-Security-Policy is same-origin only).
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  build: {
    // CMake passes --outDir into the build tree; `npm run build` alone writes dist/.
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: true,
    target: 'es2022',
    chunkSizeWarningLimit: 1024,
    // No inline data: URLs: every asset is a file under /assets/ that the CSP allows.
    assetsInlineLimit: 0,
    modulePreload: { polyfill: false },
  },
  test: {
    include: ['src/**/*.test.ts'],
    environment: 'node',
  },
});
