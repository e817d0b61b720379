// Builds the single-page frontend into dist/, which attendance_api serves on its own origin.
import { defineConfig } from 'vite';
import react from '@vitejs/plugin-react';

export default defineConfig({
  plugins: [react()],
  base: '/',
  build: { outDir: 'dist', emptyOutDir: true, sourcemap: false, chunkSizeWarningLimit: 700 },
  // `npm run dev` proxies the API to a running attendance_api (default port 8000).
  server: { proxy: { '/api': 'http://127.0.0.1:8000', '/broadcasting': 'http://127.0.0.1:8000' } },
});
