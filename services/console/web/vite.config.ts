import { defineConfig } from "vite";
import react from "@vitejs/plugin-react";

// The console is served by dmsd at /console/ (services/console embeds
// ../dist). `npm run dev` proxies the API to a dmsd on :8080.
export default defineConfig({
  base: "/console/",
  plugins: [react()],
  build: {
    outDir: "../dist",
    emptyOutDir: true,
    // Reproducible output: the committed dist is checked against a fresh
    // build (make console-check), so no source maps with absolute paths.
    sourcemap: false,
    chunkSizeWarningLimit: 4096,
  },
  server: {
    proxy: {
      "/v1": "http://127.0.0.1:8080",
      "/v3": "http://127.0.0.1:8080",
    },
  },
});
