// How a browser reads a URL: the WHATWG URL Standard parser as Node implements it (`new URL()`).
//
// One request per line on stdin, a JSON string (so tabs, newlines and NUL survive the trip); one answer per line
// on stdout: {"ok": true, "protocol", "hostname", "port", "href"} or {"ok": false, "error"}. Used by
// e2e/test_redirect_uri_parsing.py to check that the server judges a redirect URI's host as a browser does.
import { createInterface } from "node:readline";

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  let answer;
  try {
    const url = new URL(JSON.parse(line));
    answer = { ok: true, protocol: url.protocol, hostname: url.hostname, port: url.port, href: url.href };
  } catch (error) {
    answer = { ok: false, error: String(error && error.message ? error.message : error) };
  }
  process.stdout.write(JSON.stringify(answer) + "\n");
}
