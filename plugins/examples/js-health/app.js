// A deployer hook written in JavaScript: an HTTP health check of the new release, the
// same check as ../python-health.
//
// It GETs `url` and passes when the answer has status `expect-status` (default 200) and,
// if `expect-json` is given, a JSON body containing those key/value pairs, e.g.
//   params = { url = "https://test.shop.example.com/health", expect-json = { status = "ok" } }
//
// Build, from this directory (or a copy of app.js, package.json, package-lock.json and
// wit/world.wit; everything after `npm ci` works offline):
//   npm ci                                             # componentize-js, as the lockfile pins it
//   deployer plugin wit --out wit/deps/deployer-plugin # the contract this deployer implements
//   npm run build                                      # componentize-js ... --out js-health.wasm
// Then `deployer plugin inspect js-health.wasm` prints the sha256 for deployer.toml, where
// the plugin needs `http-allow` for the hosts it checks (its world, wit/world.wit, imports
// only log and http, so nothing else has to be granted).
//
// `npm run build` disables every StarlingMonkey feature that needs WASI (stdio, random,
// clocks, http, fetch-event), so the component imports no WASI at all. The price: no
// console output (use `log`), no fetch() (use `send`), Math.random() and crypto are
// deterministic, Date.now() is no clock, and an uncaught exception traps with its message
// lost, which is why `run` below turns one into a failed gate.
//
// componentize-js turns the WIT into plain JS values: records are objects with camelCase
// fields, enums and variant tags are their kebab-case names as strings, list<u8> is a
// Uint8Array. An exported function returning `result` returns its ok value and throws its
// err value; an imported one returns its ok value and throws a ComponentError whose
// `payload` is its err value.

import { log } from 'deployer:plugin/log@0.3.1';
import { send } from 'deployer:plugin/http@0.3.1';

const NAME = 'js-health';

function result(status, detail) {
  return { name: NAME, status, detail, observed: undefined };
}

// The parameters and a list of param-error records (empty when they are fine).
function parse(params) {
  let p;
  try {
    p = JSON.parse(params || '{}');
  } catch (e) {
    return [null, [{ field: '', message: `not JSON: ${e.message}` }]];
  }
  if (p === null || typeof p !== 'object' || Array.isArray(p)) {
    return [null, [{ field: '', message: 'must be a JSON object' }]];
  }
  const errors = [];
  const url = p.url;
  if (typeof url !== 'string' || !(url.startsWith('http://') || url.startsWith('https://'))) {
    errors.push({ field: 'url', message: 'must be an http(s) URL, e.g. "https://test.example.com/health"' });
  }
  const status = p['expect-status'] ?? 200;
  if (!Number.isInteger(status) || status < 100 || status > 599) {
    errors.push({ field: 'expect-status', message: 'must be an HTTP status number (100-599)' });
  }
  const json = p['expect-json'];
  if (json !== undefined && (json === null || typeof json !== 'object' || Array.isArray(json))) {
    errors.push({ field: 'expect-json', message: 'must be a table of expected key/value pairs' });
  }
  return [p, errors];
}

// Structural equality of two JSON values (objects by keys, whatever their order).
function same(a, b) {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  return ka.length === kb.length && ka.every((k) => Object.hasOwn(b, k) && same(a[k], b[k]));
}

function check(ctx) {
  const [p, errors] = parse(ctx.params);
  if (errors.length) {
    return result('fail', errors.map((e) => `${e.field}: ${e.message}`).join('; '));
  }
  let response;
  try {
    response = send({ method: 'GET', url: p.url, headers: [], body: new Uint8Array(), timeoutMs: 5000 });
  } catch (e) {
    // A ComponentError whose payload is the capability-error:
    // { tag: 'denied' | 'invalid' | 'unavailable' | 'limit', val: text }.
    const why = e.payload ? `${e.payload.tag}: ${e.payload.val}` : String(e);
    return result('inconclusive', `cannot reach ${p.url}: ${why}`);
  }
  const want = p['expect-status'] ?? 200;
  if (response.status !== want) {
    return result('fail', `status ${response.status}, expected ${want}`);
  }
  const expected = p['expect-json'];
  if (expected && Object.keys(expected).length) {
    let body;
    try {
      body = JSON.parse(new TextDecoder().decode(response.body));
    } catch {
      return result('fail', 'body is not JSON');
    }
    if (body === null || typeof body !== 'object') {
      return result('fail', 'body is not a JSON object');
    }
    const wrong = Object.keys(expected).filter((k) => !same(body[k], expected[k]));
    if (wrong.length) {
      const got = Object.fromEntries(wrong.map((k) => [k, body[k] ?? null]));
      return result('fail', `unexpected ${JSON.stringify(got)}`);
    }
  }
  log('info', `${p.url} healthy for ${ctx.newRelease}`);
  return result('pass', `status ${response.status}`);
}

export const hook = {
  info() {
    return { name: NAME, version: '0.1.0', description: 'HTTP health check, written in JavaScript' };
  },

  validate(params) {
    const [, errors] = parse(params);
    if (errors.length) throw errors;
  },

  run(ctx) {
    // Built without stdio, an uncaught exception would trap with its message lost; as a
    // failed gate its message reaches the deployment log instead.
    try {
      return check(ctx);
    } catch (e) {
      return result('fail', `js-health crashed: ${e}`);
    }
  },
};
