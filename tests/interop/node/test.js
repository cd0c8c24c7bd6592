'use strict';
// Interop suite: @grpc/grpc-js against uapi-sidecar's native engine (or,
// in pair mode, its translation backend in front of its REST facade).
//
// Run: node tests/interop/node/test.js (after `npm ci` in this folder).
// The sidecar binary is $USC_SIDECAR_BINARY (default
// bazel-bin/src/uapi-sidecar); $USC_SIDECAR_WRAPPER goes in front of its
// command line (e.g. valgrind, or tests/interop/pair.sh);
// $USC_EXPECT_BACKEND is the x-uapi-backend expected (default "native").
// Prints one line per test and ends with "N passed, N failed".

const assert = require('node:assert/strict');
const { spawn } = require('node:child_process');
const path = require('node:path');
const readline = require('node:readline');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const REPO = path.resolve(__dirname, '..', '..', '..');
const BINARY = path.resolve(
  process.env.USC_SIDECAR_BINARY || path.join(REPO, 'bazel-bin/src/uapi-sidecar'));
const WRAPPER = (process.env.USC_SIDECAR_WRAPPER || '').split(/\s+/).filter(Boolean);
// A slowing wrapper such as valgrind. tests/interop/pair.sh (pair mode) is
// not one by itself: only the wrapper it puts in front of both sidecars,
// USC_PAIR_INNER_WRAPPER.
const SLOWED = WRAPPER.length > 0 && (path.basename(WRAPPER[0]) !== 'pair.sh'
  || (process.env.USC_PAIR_INNER_WRAPPER || '').trim() !== '');
const SLOW = SLOWED ? 4 : 1;
const STARTUP_MS = SLOWED ? 30000 : 10000;
const RPC_MS = 10000 * SLOW;
const TEST_MS = 60000 * SLOW;
const SERVICE = 'uapi.phonecalls.v1.PhoneCallService';
const DOMAIN = 'uapi.voipnow.com';
const ERROR_INFO_URL = 'type.googleapis.com/google.rpc.ErrorInfo';
const UNKNOWN_ID = '0123456789abcdef0123';
// Who answers, as x-uapi-backend says: "uapi" in pair mode.
const EXPECT_BACKEND = process.env.USC_EXPECT_BACKEND || 'native';
const S = grpc.status;

const packageDef = protoLoader.loadSync('uapi/phonecalls/v1/phonecalls.proto', {
  includeDirs: [path.join(REPO, 'proto'), '/usr/include'],
  keepCase: true,
  longs: String,
  enums: String,
  defaults: true,
  oneofs: true,
});
const PhoneCallService =
  grpc.loadPackageDefinition(packageDef).uapi.phonecalls.v1.PhoneCallService;

// ---------------------------------------------------------------- sidecar

class Sidecar {
  constructor(flags = []) {
    this.flags = flags;
    this.lines = [];
  }

  start() {
    const cmd = [...WRAPPER, BINARY, '--listen', '127.0.0.1:0',
      '--admin-listen', '127.0.0.1:0', ...this.flags];
    this.proc = spawn(cmd[0], cmd.slice(1), {
      stdio: ['ignore', 'ignore', 'pipe'], detached: true,
    });
    Sidecar.live.add(this);
    this.exited = new Promise((resolve) => {
      this.proc.on('exit', (code, signal) => {
        Sidecar.live.delete(this);
        resolve(code === null ? `signal ${signal}` : code);
      });
    });
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.kill();
        reject(new Error(`no listening line within ${STARTUP_MS} ms:\n${this.tail()}`));
      }, STARTUP_MS);
      this.proc.on('error', (err) => { clearTimeout(timer); reject(err); });
      readline.createInterface({ input: this.proc.stderr }).on('line', (line) => {
        this.lines.push(line);
        const m = /listening\b.*?address=([0-9A-Za-z.:[\]]+)/.exec(line);
        if (m && !this.address) {
          this.address = m[1];
          clearTimeout(timer);
          resolve(this);
        }
      });
      this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`sidecar exited (${code}) before listening:\n${this.tail()}`));
      });
    });
  }

  tail(n = 40) {
    return this.lines.slice(-n).join('\n');
  }

  // SIGTERM; resolves to the exit code (a string for a death by signal).
  async stop(signal = 'SIGTERM') {
    if (Sidecar.live.has(this)) this.proc.kill(signal);
    const timeout = sleep(STARTUP_MS).then(() => 'timeout');
    const code = await Promise.race([this.exited, timeout]);
    if (code === 'timeout') this.kill();
    return code;
  }

  kill() {
    try { process.kill(-this.proc.pid, 'SIGKILL'); } catch (e) { /* gone */ }
    Sidecar.live.delete(this);
  }
}
Sidecar.live = new Set();
process.on('exit', () => { for (const s of Sidecar.live) s.kill(); });
for (const sig of ['SIGINT', 'SIGTERM']) {
  process.on(sig, () => { for (const s of Sidecar.live) s.kill(); process.exit(130); });
}

// ---------------------------------------------------------------- helpers

function sleep(ms) {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let seq = 1000;
const freshExt = () => `8*${seq++}`;
const freshUser = () => `u${seq++}`;

function deadline(ms = RPC_MS) {
  return new Date(Date.now() + ms);
}

// A unary RPC; resolves to {resp, initial} or rejects with the ServiceError.
function call(client, method, req, ms = RPC_MS) {
  return new Promise((resolve, reject) => {
    let initial = null;
    const c = client[method](req, new grpc.Metadata(), { deadline: deadline(ms) },
      (err, resp) => (err ? reject(err) : resolve({ resp, initial })));
    c.on('metadata', (md) => { initial = md; });
  });
}

async function rpc(client, method, req) {
  return (await call(client, method, req)).resp;
}

// WatchPhoneCalls read to its end: resolves when it ends OK, rejects with
// the ServiceError.
function watchToEnd(client, req, ms = RPC_MS) {
  return new Promise((resolve, reject) => {
    const c = client.WatchPhoneCalls(req, new grpc.Metadata(), { deadline: deadline(ms) });
    c.on('data', () => {});
    c.on('error', reject);
    c.on('status', (status) => { if (status.code === S.OK) resolve(); });
  });
}

// A unary call of `path` with raw request bytes; rejects with the error.
function rawCall(client, path, bytes, ms = RPC_MS) {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest(path, (x) => x, (x) => x, bytes, new grpc.Metadata(),
      { deadline: deadline(ms) }, (err, resp) => (err ? reject(err) : resolve(resp)));
  });
}

// The error of `method` (a method name, WatchPhoneCalls included, or a
// "/service/method" path given raw bytes as `req`).
async function rpcError(client, method, req) {
  try {
    if (method.startsWith('/')) await rawCall(client, method, req);
    else if (method === 'WatchPhoneCalls') await watchToEnd(client, req);
    else await call(client, method, req);
  } catch (err) {
    return err;
  }
  throw new assert.AssertionError({ message: `${method} succeeded, expected an error` });
}

// Minimal protobuf reader for google.rpc.Status / Any / ErrorInfo.
function protoFields(buf) {
  const out = [];
  let i = 0;
  const varint = () => {
    let v = 0; let mul = 1;
    for (;;) {
      if (i >= buf.length) throw new Error('truncated varint');
      const b = buf[i++];
      v += (b & 0x7f) * mul;
      mul *= 128;
      if (!(b & 0x80)) return v;
    }
  };
  while (i < buf.length) {
    const key = varint();
    const field = Math.floor(key / 8); const wire = key % 8;
    if (wire === 0) out.push([field, varint()]);
    else if (wire === 2) {
      const n = varint();
      if (i + n > buf.length) throw new Error('truncated field');
      out.push([field, buf.subarray(i, i + n)]);
      i += n;
    } else if (wire === 1) i += 8;
    else if (wire === 5) i += 4;
    else throw new Error(`bad wire type ${wire}`);
  }
  return out;
}

function decodeStatus(buf) {
  const st = { code: 0, message: '', details: [] };
  for (const [f, v] of protoFields(buf)) {
    if (f === 1) st.code = v;
    else if (f === 2) st.message = v.toString('utf8');
    else if (f === 3) {
      const any = { typeUrl: '', value: Buffer.alloc(0) };
      for (const [af, av] of protoFields(v)) {
        if (af === 1) any.typeUrl = av.toString('utf8');
        else if (af === 2) any.value = av;
      }
      st.details.push(any);
    }
  }
  return st;
}

function decodeErrorInfo(buf) {
  const info = { reason: '', domain: '' };
  for (const [f, v] of protoFields(buf)) {
    if (f === 1) info.reason = v.toString('utf8');
    else if (f === 2) info.domain = v.toString('utf8');
  }
  return info;
}

// Status code, uapi-error-code trailer, google.rpc.Status details.
function assertStatus(err, code, uapiCode) {
  assert.equal(err.code, code, `code ${err.code} (${err.details}), expected ${code}`);
  const codes = err.metadata.get('uapi-error-code');
  const bins = err.metadata.get('grpc-status-details-bin');
  if (uapiCode !== null) {
    assert.deepEqual(codes, [uapiCode]);
    assert.ok(err.details, 'empty grpc-message');
    assert.equal(bins.length, 1, 'no grpc-status-details-bin');
  }
  if (bins.length) {
    const st = decodeStatus(bins[0]);
    assert.equal(st.code, code);
    assert.equal(st.message, err.details);
    const infos = st.details.filter((d) => d.typeUrl === ERROR_INFO_URL)
      .map((d) => decodeErrorInfo(d.value));
    if (uapiCode !== null) {
      assert.deepEqual(infos, [{ reason: uapiCode, domain: DOMAIN }]);
    } else {
      for (const info of infos) {
        assert.equal(info.domain, DOMAIN);
        assert.deepEqual(codes, [info.reason]);
      }
    }
  }
}

async function expectError(client, method, req, code, uapiCode) {
  assertStatus(await rpcError(client, method, req), code, uapiCode);
}

const tsSet = (t) => t !== null && t !== undefined && (Number(t.seconds) !== 0 || t.nanos !== 0);
const tsSeconds = (t) => Number(t.seconds) + t.nanos / 1e9;
const viewOf = (pc, id) => {
  const v = pc.phone_call_views.find((x) => x.id === id);
  assert.ok(v, `no view ${id}`);
  return v;
};

function assertNow(t, before) {
  assert.ok(tsSet(t), 'timestamp unset');
  const s = tsSeconds(t);
  assert.ok(s >= before / 1000 - 1 && s <= Date.now() / 1000 + 1, `timestamp ${s} not now`);
}

function assertBackend(initial) {
  assert.ok(initial, 'no initial metadata');
  assert.deepEqual(initial.get('x-uapi-backend'), [EXPECT_BACKEND]);
}

// A WatchPhoneCalls stream whose items are awaited one by one.
class Watch {
  constructor(client, req, ms) {
    this.items = [];
    this.waiters = [];
    const opts = ms ? { deadline: deadline(ms) } : {};
    this.call = client.WatchPhoneCalls(req, new grpc.Metadata(), opts);
    // Resolves once the response headers are in (or the stream ended): the
    // server sends them when the subscription is live (a polling backend:
    // once its baseline poll is in).
    this.headers = new Promise((resolve) => { this.headersIn = resolve; });
    this.call.on('metadata', (md) => { this.initial = md; this.headersIn(); });
    this.call.on('data', (event) => this.push({ event }));
    this.call.on('error', (error) => { this.headersIn(); this.push({ error }); });
    this.call.on('status', (status) => {
      this.headersIn();
      if (status.code === S.OK) this.push({ end: true });
    });
  }

  waitHeaders(ms = RPC_MS) {
    let timer;
    return Promise.race([this.headers, new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no Watch response headers within ${ms} ms`)), ms);
    })]).finally(() => clearTimeout(timer));
  }

  push(item) {
    const w = this.waiters.shift();
    if (w) w(item); else this.items.push(item);
  }

  next(ms = RPC_MS) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`no Watch item within ${ms} ms`));
      }, ms);
      const waiter = (item) => { clearTimeout(timer); resolve(item); };
      this.waiters.push(waiter);
    });
  }

  async nextEvent(ms) {
    const item = await this.next(ms);
    assert.ok(item.event, `stream ended instead: ${item.error || 'OK'}`);
    return item.event;
  }

  async expect(type, id, ms) {
    const ev = await this.nextEvent(ms);
    assert.deepEqual([ev.type, ev.phone_call.id], [type, id]);
    return ev;
  }

  // Waits for the response headers, then creates probe calls (matching the
  // stream's filter) until their events flow, then drains up to the last
  // probe's event.
  async waitReady(probe) {
    await this.waitHeaders();
    const ids = [];
    for (let n = 0; n < 50; n++) {
      ids.push((await probe()).id);
      const until = Date.now() + 200 * SLOW;
      for (;;) { // other events (of earlier changes) are skipped
        let item;
        try { item = await this.next(Math.max(1, until - Date.now())); } catch (e) { break; }
        assert.ok(item.event, 'Watch ended while waiting');
        let ev = item.event;
        if (!ids.includes(ev.phone_call.id)) continue;
        while (ev.phone_call.id !== ids[ids.length - 1]) ev = await this.nextEvent();
        return;
      }
    }
    throw new Error('Watch delivered no event for 50 probe calls');
  }

  cancel() {
    this.call.cancel();
  }
}

// ---------------------------------------------------------------- runner

const tests = [];
const test = (name, fn) => tests.push({ name, fn });

let sidecar;
let client;
const cleanups = [];

async function create(opts = {}) {
  const ext = opts.extension || freshExt();
  const method = opts.method || 'CreateSimplePhoneCall';
  const req = { source: [ext], destination: [freshExt()], ...opts, extension: ext };
  delete req.method;
  const resp = await rpc(client, method, req);
  assert.equal(resp.phone_calls.length, 1);
  return resp.phone_calls[0];
}

const addr = (pc, user = '') => ({ user_id: user, extension: pc.extension, phone_call_id: pc.id });
const get = (pc, user = '') => rpc(client, 'GetPhoneCall', addr(pc, user));
const act = (method, pc, view, fields = {}, user = '') =>
  rpc(client, method, { ...addr(pc, user), phone_call_view_id: view, ...fields });

function watch(req, ms) {
  const w = new Watch(client, req, ms);
  cleanups.push(() => w.cancel());
  return w;
}

// Runs fn(client) against a sidecar of its own started with `flags`; that
// sidecar must then exit 0 on SIGTERM.
async function withSidecar(flags, fn) {
  const own = await new Sidecar(flags).start();
  const ownClient = new PhoneCallService(own.address, grpc.credentials.createInsecure());
  try {
    await fn(ownClient);
  } catch (err) {
    own.kill();
    throw err;
  } finally {
    ownClient.close();
  }
  const code = await own.stop();
  assert.equal(code, 0, `sidecar ${flags.join(' ')} exited ${code}:\n${own.tail()}`);
}

// ---------------------------------------------------------------- error rows
// The native engine's error rows (docs/native-engine.md, api-contract.md
// §2) are tables of [methods, request, code, uapiCode]: `methods` is one
// name or a list, `request` may hold fields a method does not have (they
// are not sent), uapiCode null for the rows without one. expectErrors runs
// every method of every row, checks each with assertStatus and reports all
// the rows that failed.

const METHODS = Object.keys(PhoneCallService.service);
const CREATES = ['CreateSimplePhoneCall', 'CreateCallbackPhoneCall',
  'CreateConferenceInvitePhoneCall'];
const ACTIONS_WITH_VIEW = ['OnHold', 'OffHold', 'StartRecording', 'StopRecording', 'Park',
  'UnPark', 'PickUp', 'BargeIn', 'Whisper', 'Monitor'];
const TRANSFERS = ['Transfer', 'TransferToVoicemail'];
const ACTIONS = [...ACTIONS_WITH_VIEW, ...TRANSFERS];
const NEEDS_SEND_CALL_TO = ['UnPark', 'PickUp', 'BargeIn', 'Whisper', 'Monitor', ...TRANSFERS];
const LISTENING_IN = ['BargeIn', 'Whisper', 'Monitor'];
const IA = S.INVALID_ARGUMENT;
const NF = S.NOT_FOUND;
const FP = S.FAILED_PRECONDITION;
const STATE_INVALID = 'pc_phonecall_state_invalid';

// A request every method accepts for `pc` (each row then spoils one field).
const validReq = (pc, user = '') => ({
  ...addr(pc, user), phone_call_view_id: '00', send_call_to: '210', source: ['210'],
  destination: ['211'],
});

const brief = (req) => (Buffer.isBuffer(req) ? `<${req.length} raw bytes>`
  : JSON.stringify(req, (k, v) => (typeof v === 'string' && v.length > 40
    ? `${v.slice(0, 8)}...(${v.length} chars)` : v)));

async function expectErrors(rows, cl = client) {
  const failures = [];
  let n = 0;
  for (const [methods, req, code, uapiCode] of rows) {
    for (const method of [].concat(methods)) {
      n++;
      try {
        assertStatus(await rpcError(cl, method, req), code, uapiCode);
      } catch (err) {
        failures.push(`${method} ${brief(req)}: ${err.message.replace(/\s+/g, ' ')}`);
      }
    }
  }
  assert.ok(n > 0, 'no error rows');
  if (failures.length) {
    throw new assert.AssertionError({
      message: `${failures.length} of ${n} error rows failed:\n${failures.slice(0, 20).join('\n')}`,
    });
  }
}

// ---------------------------------------------------------------- tests

for (const [method, dest, flows, extra] of [
  ['CreateSimplePhoneCall', '0003*211', ['FLOW_LOCAL', 'FLOW_LOCAL'], {}],
  ['CreateCallbackPhoneCall', '4242425001', ['FLOW_OUTGOING_PUBLIC', 'FLOW_INCOMING_PUBLIC'],
    { caller_destination: 'Callback <1>' }],
  ['CreateConferenceInvitePhoneCall', '0003*212', ['FLOW_LOCAL', 'FLOW_LOCAL'],
    { conference_number: { value: 5000 }, pin: '1234' }],
]) {
  test(`${method} returns the new call`, async () => {
    const ext = freshExt();
    const t0 = Date.now();
    const req = {
      extension: ext, source: [ext], destination: [dest], caller_id: 'John <4242425>',
      nonce: `n-${method}`, wait_for_pickup: { value: 30 }, call_duration: { value: 60 },
      allow_public_transfer: { value: true }, video: { value: false }, ...extra,
    };
    const { resp, initial } = await call(client, method, req);
    assertBackend(initial);
    const [pc] = resp.phone_calls;
    assert.match(pc.id, /^[0-9a-f]{20}$/);
    assert.deepEqual([pc.extension, pc.owner_id, pc.owner_name, pc.nonce],
      [ext, '1', 'Default Organization', req.nonce]);
    assertNow(pc.published, t0);
    assertNow(pc.answered, t0);
    assert.deepEqual(pc.phone_call_views.map((v) => v.id), ['00', '01']);
    const [v0, v1] = pc.phone_call_views;
    assert.deepEqual([v0.extension, v1.extension], [ext, dest]);
    assert.deepEqual([v0.flow, v1.flow], flows);
    assert.deepEqual([v0.caller_id, v1.caller_id],
      [req.caller_id, req.caller_destination || req.caller_id]);
    for (const v of [v0, v1]) {
      assert.deepEqual([v.source, v.destination, v.status], [[ext], [dest], 'STATUS_ON_CALL']);
      assertNow(v.answered, t0);
      for (const f of ['ringing', 'recording', 'parked', 'parked_pos', 'on_hold', 'holder']) {
        assert.equal(v[f], null, f);
      }
    }
    assert.deepEqual(await get(pc), pc);
  });
}

test('GetPhoneCall with user aliases and view extension', async () => {
  const pc = await create();
  for (const user of ['', '@me', '@viewer', '@owner', '1']) {
    for (const ext of [pc.extension, '@self', viewOf(pc, '01').extension]) {
      const { resp, initial } = await call(client, 'GetPhoneCall',
        { user_id: user, extension: ext, phone_call_id: pc.id });
      assert.deepEqual(resp, pc);
      assertBackend(initial);
    }
  }
});

test('ListPhoneCalls pages, sorts, filters and selects fields', async () => {
  const ext = freshExt();
  const calls = [];
  for (let i = 0; i < 5; i++) calls.push(await create({ extension: ext, nonce: `l${i}` }));
  const ids = calls.map((c) => c.id);
  const list = (req) => rpc(client, 'ListPhoneCalls', { extension: ext, ...req });
  let r = await list({});
  assert.deepEqual(r.phone_calls, calls);
  assert.deepEqual([r.total_results, r.items_per_page, r.start_index], [5, 20, 0]);
  r = await list({ count: { value: 2 }, start_index: { value: 2 } });
  assert.deepEqual(r.phone_calls.map((c) => c.id), ids.slice(2, 4));
  assert.deepEqual([r.total_results, r.items_per_page, r.start_index], [5, 2, 2]);
  r = await list({ sort_order: 'descending' });
  assert.deepEqual(r.phone_calls.map((c) => c.id), [...ids].reverse());
  r = await list({ phone_call_id: ids[3] });
  assert.deepEqual(r.phone_calls.map((c) => c.id), [ids[3]]);
  r = await list({ phone_call_id: UNKNOWN_ID });
  assert.deepEqual([r.phone_calls.length, r.total_results], [0, 0]);
  r = await list({ filter_by: 'id', filter_op: 'inArray', filter_value: `${ids[4]},${ids[1]}` });
  assert.deepEqual(r.phone_calls.map((c) => c.id), [ids[1], ids[4]]);
  r = await list({ filter_by: 'id', filter_op: 'equals', filter_value: ids[2] });
  assert.deepEqual(r.phone_calls.map((c) => c.id), [ids[2]]);
  r = await list({ filter_by: 'published', filter_op: 'lessThan', filter_value: '2000-01-01T00:00:00Z' });
  assert.equal(r.total_results, 0);
  r = await list({ filter_by: 'published', filter_op: 'greaterThan', filter_value: '2000-01-01T00:00:00Z' });
  assert.equal(r.total_results, 5);
  r = await list({ fields: ['id', 'nonce'], count: { value: 1 } });
  const [only] = r.phone_calls;
  assert.deepEqual([only.id, only.nonce, only.extension, only.owner_id, only.published,
    only.phone_call_views], [ids[0], 'l0', '', '', null, []]);
  r = await rpc(client, 'ListPhoneCalls', { user_id: freshUser(), extension: ext });
  assert.equal(r.total_results, 0);
});

test('HangupPhoneCalls by id, by phone number and for a whole extension', async () => {
  const ext = freshExt();
  const dest = freshExt();
  const a = await create({ extension: ext, destination: [dest] });
  const b = await create({ extension: ext });
  const c = await create({ extension: ext, destination: [dest] });
  const d = await create({ extension: ext });
  const hangup = async (req) =>
    (await rpc(client, 'HangupPhoneCalls', { extension: ext, ...req })).phone_call_ids;
  assert.deepEqual(await hangup({ phone_call_id: a.id, phone_number: '0003*999' }), []);
  assert.deepEqual(await hangup({ phone_call_id: a.id, phone_number: dest }), [a.id]);
  await expectError(client, 'GetPhoneCall', addr(a), S.NOT_FOUND, 'pc_phoncall_invalid');
  assert.deepEqual(await hangup({ phone_call_id: b.id }), [b.id]);
  assert.deepEqual(await hangup({ phone_number: dest }), [c.id]);
  assert.deepEqual(await hangup({}), [d.id]);
  assert.deepEqual(await hangup({}), []);
});

test('OnHold / OffHold', async () => {
  const pc = await create();
  const t0 = Date.now();
  const held = await act('OnHold', pc, '01');
  assertNow(viewOf(held, '01').on_hold, t0);
  assert.deepEqual(viewOf(held, '01').holder, { value: 1 });
  assert.deepEqual(viewOf(held, '00'), viewOf(pc, '00'));
  assert.deepEqual(await act('OffHold', pc, '01'), pc);
});

test('StartRecording / StopRecording', async () => {
  const pc = await create();
  const t0 = Date.now();
  const rec = await act('StartRecording', pc, '00', { format: 'wav49' });
  assertNow(viewOf(rec, '00').recording, t0);
  assert.deepEqual(await get(pc), rec);
  assert.deepEqual(await act('StopRecording', pc, '00'), pc);
});

test('Park / UnPark', async () => {
  const user = freshUser();
  const a = await create({ user_id: user });
  const b = await create({ user_id: user });
  const t0 = Date.now();
  const pa = await act('Park', a, '01', { max_in_parking: { value: 600 } }, user);
  const va = viewOf(pa, '01');
  assertNow(va.parked, t0);
  assert.deepEqual([va.parked_pos, va.parked_by], [{ value: 1 }, a.extension]);
  const pb = await act('Park', b, '00', {}, user);
  assert.deepEqual(viewOf(pb, '00').parked_pos, { value: 2 });
  const ua = await act('UnPark', a, '01', { send_call_to: '0003*333' }, user);
  const v = viewOf(ua, '01');
  assert.deepEqual([v.parked, v.parked_pos, v.parked_by, v.extension],
    [null, null, '', '0003*333']);
  assert.deepEqual(await get(ua, user), ua);
});

test('PickUp', async () => {
  const pc = await create();
  const got = await act('PickUp', pc, '01', { send_call_to: '0003*444' });
  const v = viewOf(got, '01');
  assert.deepEqual([v.extension, v.status, v.ringing], ['0003*444', 'STATUS_ON_CALL', null]);
  assert.deepEqual(v.answered, viewOf(pc, '01').answered);
});

test('BargeIn / Whisper / Monitor add views', async () => {
  const pc = await create();
  const steps = [['BargeIn', '01', '0003*301', {}],
    ['Whisper', '00', '0003*302', { private: { value: true } }],
    ['Monitor', '01', '0003*303', {}]];
  for (let n = 0; n < steps.length; n++) {
    const [method, leg, to, extra] = steps[n];
    const t0 = Date.now();
    const got = await act(method, pc, leg, { send_call_to: to, caller_id: `Boss ${n}`, ...extra });
    assert.equal(got.phone_call_views.length, 3 + n);
    const nv = got.phone_call_views[2 + n];
    assert.deepEqual([nv.id, nv.extension, nv.source, nv.destination, nv.flow, nv.status, nv.caller_id],
      [`0${2 + n}`, to, [to], [viewOf(pc, leg).extension], 'FLOW_LOCAL', 'STATUS_ON_CALL', `Boss ${n}`]);
    assertNow(nv.answered, t0);
  }
});

test('Transfer / TransferToVoicemail', async () => {
  for (const method of ['Transfer', 'TransferToVoicemail']) {
    const pc = await create();
    await act('OnHold', pc, '01');
    const got = await act(method, pc, '01', { send_call_to: '0003*400' });
    const v = viewOf(got, '01');
    assert.deepEqual([v.destination, v.extension, v.on_hold, v.holder],
      [['0003*400'], '0003*400', null, null]);
    const byNumber = await rpc(client, method, {
      ...addr(pc), send_call_to: '4242425', transfer_number: pc.extension,
    });
    assert.deepEqual(viewOf(byNumber, '00').destination, ['4242425']);
  }
});

test('every RPC: user_invalid', async () => {
  const pc = await create();
  await expectErrors(['bad-user', 'a'.repeat(65), '@nobody', '1 2', 'ü'].map((user) =>
    [METHODS, validReq(pc, user), IA, 'user_invalid']));
});

test('every RPC: extension_invalid (@self on creates; empty is all on Watch)', async () => {
  const pc = await create();
  const rows = ['', 'abc', '***', '1'.repeat(33), '12a', '@me'].map((ext) => [
    ext ? METHODS : METHODS.filter((m) => m !== 'WatchPhoneCalls'),
    { ...validReq(pc), extension: ext }, IA, 'extension_invalid']);
  rows.push([CREATES, { ...validReq(pc), extension: '@self' }, IA, 'extension_invalid']);
  await expectErrors(rows);
});

test('pc_phoncall_invalid INVALID_ARGUMENT: empty, not alphanumeric, 65 characters', async () => {
  const pc = await create();
  const rows = ['', 'abc-123', 'a b', 'a'.repeat(65)].map((id) => [
    // Optional on List and Hangup: there only a given id is checked.
    ['GetPhoneCall', ...ACTIONS, ...(id ? ['ListPhoneCalls', 'HangupPhoneCalls'] : [])],
    { ...validReq(pc), phone_call_id: id }, IA, 'pc_phoncall_invalid']);
  await expectErrors(rows);
  assert.deepEqual(await get(pc), pc);
});

test('pc_phoncall_invalid NOT_FOUND: unknown id, other extension, other user\'s call', async () => {
  const pc = await create();
  const other = freshUser();
  const theirs = await create({ user_id: other });
  const methods = ['GetPhoneCall', 'HangupPhoneCalls', ...ACTIONS];
  const rows = [
    [methods, { ...validReq(pc), phone_call_id: UNKNOWN_ID }, NF, 'pc_phoncall_invalid'],
    [methods, { ...validReq(pc), phone_call_id: 'Z'.repeat(64) }, NF, 'pc_phoncall_invalid'],
    [methods, { ...validReq(pc), extension: freshExt() }, NF, 'pc_phoncall_invalid'],
  ];
  // My call asked for as the other user, theirs as the default user; by the
  // call's extension and by @self.
  for (const [user, c] of [[other, pc], ['', theirs]]) {
    for (const ext of [c.extension, '@self']) {
      rows.push([methods, { ...validReq(c, user), extension: ext }, NF, 'pc_phoncall_invalid']);
    }
  }
  await expectErrors(rows);
  assert.deepEqual(await get(pc), pc);
  assert.deepEqual(await get(theirs, other), theirs);
});

test('pc_phoncallview_invalid: INVALID_ARGUMENT if malformed, NOT_FOUND if no such view', async () => {
  const pc = await create();
  const row = (methods, view, code) => [methods, { ...validReq(pc), phone_call_view_id: view },
    code, 'pc_phoncallview_invalid'];
  await expectErrors([
    ...['', '0', '000', 'ab', '0a', ' 0'].map((view) => row(ACTIONS_WITH_VIEW, view, IA)),
    // Optional on the transfers: there only a given view is checked.
    ...['x', '000'].map((view) => row(TRANSFERS, view, IA)),
    ...['02', '99'].map((view) => row(ACTIONS, view, NF)),
  ]);
  assert.deepEqual(await get(pc), pc);
});

test('FAILED_PRECONDITION: every state rule', async () => {
  const pc = await create();
  const onBothLegs = (methods) => ['00', '01'].map((view) =>
    [methods, { ...validReq(pc), phone_call_view_id: view }, FP, STATE_INVALID]);
  // OffHold not on hold, StopRecording not recording, UnPark not parked.
  await expectErrors(onBothLegs(['OffHold', 'StopRecording', 'UnPark']));
  const twice = ['OnHold', 'StartRecording', 'Park'];
  for (const view of ['00', '01']) for (const method of twice) await act(method, pc, view);
  await expectErrors(onBothLegs(twice));
  const got = await get(pc);
  for (const view of ['00', '01']) {
    const v = viewOf(got, view);
    assert.ok(tsSet(v.on_hold) && tsSet(v.recording) && tsSet(v.parked), `leg ${view}`);
  }
  // At most 8 views: listening in on a full call.
  const full = await create();
  for (let n = 0; n < 6; n++) await act('BargeIn', full, '00', { send_call_to: `0003*6${n}` });
  await expectErrors([[LISTENING_IN, { ...validReq(full), send_call_to: '0003*699' }, FP,
    STATE_INVALID]]);
  assert.equal((await get(full)).phone_call_views.length, 8);
});

test('FAILED_PRECONDITION: listening in on an unanswered call (--ring-delay)', () =>
  withSidecar(['--ring-delay', '60000'], async (cl) => {
    const ext = freshExt();
    const ringing = (await rpc(cl, 'CreateSimplePhoneCall',
      { extension: ext, source: [ext], destination: [freshExt()] })).phone_calls[0];
    assert.equal(ringing.answered, null);
    await expectErrors([[LISTENING_IN, { ...validReq(ringing), send_call_to: '0003*556' }, FP,
      STATE_INVALID]], cl);
    assert.deepEqual(await rpc(cl, 'GetPhoneCall', addr(ringing)), ringing);
  }));

test('provisional codes of the other fields', async () => {
  const pc = await create();
  // Leg 01 parked, so that UnPark gets as far as its send_call_to.
  await act('Park', pc, '01', { max_in_parking: { value: 3600 } });
  const valid = validReq(pc);
  const rows = [];
  const nine = Array.from({ length: 9 }, (_, i) => `${200 + i}`);
  for (const bad of [[], ['abc'], ['1'.repeat(33)], [''], ['21 0'], nine]) {
    rows.push([CREATES, { ...valid, source: bad }, IA, 'pc_source_invalid']);
    rows.push([CREATES, { ...valid, destination: bad }, IA, 'pc_destination_invalid']);
  }
  rows.push(['StartRecording', { ...valid, format: 'mp3' }, IA, 'pc_format_invalid']);
  for (const seconds of [9, 3601, 0, -1]) {
    rows.push(['Park', { ...valid, max_in_parking: { value: seconds } }, IA,
      'pc_maxinparking_invalid']);
  }
  for (const to of ['', 'abc', '1'.repeat(33), '#1']) {
    for (const method of NEEDS_SEND_CALL_TO) {
      rows.push([method, { ...valid, phone_call_view_id: method === 'UnPark' ? '01' : '00',
        send_call_to: to }, IA, 'pc_sendcallto_invalid']);
    }
  }
  for (const [uapiCode, fields] of [
    ['count_invalid', { count: { value: 0 } }],
    ['count_invalid', { count: { value: 5001 } }],
    ['count_invalid', { count: { value: -1 } }],
    ['startindex_invalid', { start_index: { value: -1 } }],
    ['startindex_invalid', { start_index: { value: 5001 } }],
    ['filterby_invalid', { filter_by: 'extension', filter_op: 'equals', filter_value: '1' }],
    ['filterby_invalid', { filter_op: 'equals', filter_value: '1' }],
    ['filterop_invalid', { filter_by: 'id', filter_op: 'like', filter_value: '1' }],
    ['filterop_invalid', { filter_by: 'id', filter_value: '1' }],
    ['filtervalue_invalid', { filter_by: 'id', filter_op: 'equals' }],
    ['filtervalue_invalid',
      { filter_by: 'published', filter_op: 'greaterThan', filter_value: 'yesterday' }],
    ['filtervalue_invalid',
      { filter_by: 'published', filter_op: 'lessThan', filter_value: '2024-13-01T00:00:00Z' }],
    ['sortorder_invalid', { sort_order: 'up' }],
    ['fields_invalid', { fields: ['bogus'] }],
    ['fields_invalid', { fields: ['id', 'phone_call_views'] }],
  ]) rows.push(['ListPhoneCalls', { extension: pc.extension, ...fields }, IA, uapiCode]);
  await expectErrors(rows);
  // None of them changed the call; the limits themselves are fine.
  assert.equal((await get(pc)).phone_call_views.length, 2);
  const r = await rpc(client, 'ListPhoneCalls',
    { extension: pc.extension, count: { value: 5000 }, start_index: { value: 5000 } });
  assert.deepEqual([r.total_results, r.items_per_page, r.start_index, r.phone_calls.length],
    [1, 5000, 5000, 0]);
});

test('RESOURCE_EXHAUSTED: engine full (--max-calls 3)', () =>
  withSidecar(['--max-calls', '3'], async (cl) => {
    const ext = freshExt();
    const req = { extension: ext, source: [ext], destination: ['0003*1'] };
    const made = [];
    for (const method of CREATES) made.push((await rpc(cl, method, req)).phone_calls[0]);
    await expectErrors([[CREATES, req, S.RESOURCE_EXHAUSTED, null]], cl);
    await rpc(cl, 'HangupPhoneCalls', addr(made[0]));
    made.push((await rpc(cl, 'CreateSimplePhoneCall', req)).phone_calls[0]);
    await expectErrors([['CreateSimplePhoneCall', req, S.RESOURCE_EXHAUSTED, null]], cl);
    const r = await rpc(cl, 'ListPhoneCalls', { extension: ext });
    assert.deepEqual(r.phone_calls.map((c) => c.id), made.slice(1).map((c) => c.id));
  }));

test('RESOURCE_EXHAUSTED: request over the 4 MiB receive limit', async () => {
  const ext = freshExt();
  const req = { extension: ext, source: [ext], destination: ['210'] };
  await expectErrors([[CREATES, { ...req, nonce: 'n'.repeat(4 * 1024 * 1024 + 1024) },
    S.RESOURCE_EXHAUSTED, null]]);
  const nonce = 'n'.repeat(3 * 1024 * 1024);
  const pc = await create({ ...req, nonce });
  assert.equal(pc.nonce, nonce);
  assert.deepEqual((await rpc(client, 'HangupPhoneCalls', addr(pc))).phone_call_ids, [pc.id]);
});

test('UNIMPLEMENTED for unknown methods and services; INTERNAL for garbage to every method', async () => {
  await expectErrors([
    [[`/${SERVICE}/NoSuchMethod`, '/uapi.phonecalls.v1.NoSuchService/GetPhoneCall',
      '/no.such.Service/Method', `/${SERVICE}/getPhoneCall`], Buffer.alloc(0), S.UNIMPLEMENTED,
      null],
    [METHODS.map((m) => `/${SERVICE}/${m}`), Buffer.from([0xff, 0xff, 0xff, 0xff]), S.INTERNAL,
      null],
  ]);
  const pc = await create();
  assert.deepEqual(await get(pc), pc);
});

test('DEADLINE_EXCEEDED: Watch with a 0.5 s deadline', async () => {
  const t0 = Date.now();
  const w = watch({ extension: freshExt() }, 500);
  const item = await w.next(5000 * SLOW);
  const elapsed = Date.now() - t0;
  assert.ok(item.error, 'stream ended without error');
  assertStatus(item.error, S.DEADLINE_EXCEEDED, null);
  assert.ok(elapsed >= 400 && elapsed < 2000 * SLOW, `elapsed ${elapsed} ms`);
  await create();
});

test('cancelled Watch; the server serves on', async () => {
  const ext = freshExt();
  const w = watch({ extension: ext });
  await w.waitReady(() => create({ extension: ext }));
  w.cancel();
  const item = await w.next();
  assert.ok(item.error, 'no error after cancel');
  assert.equal(item.error.code, S.CANCELLED);
  const pc = await create({ extension: ext });
  assert.deepEqual(await get(pc), pc);
});

test('120 concurrent calls', async () => {
  const ext = freshExt();
  const n = 120;
  const made = await Promise.all(Array.from({ length: n }, (_, i) => rpc(client,
    'CreateSimplePhoneCall', { extension: ext, source: [ext], destination: [`0003*${i}`], nonce: `c${i}` })));
  made.forEach((r, i) => assert.equal(r.phone_calls[0].nonce, `c${i}`));
  const calls = made.map((r) => r.phone_calls[0]);
  const got = await Promise.all(calls.map((pc) => get(pc)));
  assert.deepEqual(got, calls);
  const r = await rpc(client, 'ListPhoneCalls', { extension: ext, count: { value: 5000 } });
  assert.equal(r.total_results, n);
});

test('Watch streams CREATED, UPDATED and ENDED for its extension only', async () => {
  const ext = freshExt();
  const w = watch({ extension: ext });
  await w.waitReady(() => create({ extension: ext }));
  const other = new PhoneCallService(sidecar.address, grpc.credentials.createInsecure());
  cleanups.push(() => other.close());
  const t0 = Date.now();
  await rpc(other, 'CreateSimplePhoneCall', { extension: freshExt(), source: ['1'], destination: ['2'] });
  const pc = (await rpc(other, 'CreateSimplePhoneCall',
    { extension: ext, source: [ext], destination: ['0003*1'] })).phone_calls[0];
  const created = await w.expect('CREATED', pc.id);
  assert.deepEqual(created.phone_call, pc);
  assertNow(created.time, t0);
  const held = await rpc(other, 'OnHold', { ...addr(pc), phone_call_view_id: '00' });
  assert.deepEqual((await w.expect('UPDATED', pc.id)).phone_call, held);
  await rpc(other, 'HangupPhoneCalls', addr(pc));
  assert.deepEqual((await w.expect('ENDED', pc.id)).phone_call, held);
  assertBackend(w.initial);
  assert.equal(w.items.length, 0);
});

// ---------------------------------------------------------------- main

function withTimeout(promise, ms, name) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${name}: timed out after ${ms} ms`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

async function main() {
  let passed = 0;
  let failed = 0;
  const report = (ok, name, t0, err) => {
    const took = ((Date.now() - t0) / 1000).toFixed(2);
    console.log(`${ok ? 'PASS ' : 'FAIL '} ${name} (${took}s)`);
    if (err) console.log(String(err && err.stack ? err.stack : err).replace(/^/gm, '    '));
    if (ok) passed++; else failed++;
  };
  const only = process.argv.slice(2);
  let t0 = Date.now();
  try {
    sidecar = await new Sidecar().start();
    client = new PhoneCallService(sidecar.address, grpc.credentials.createInsecure());
  } catch (err) {
    report(false, 'start sidecar', t0, err);
  }
  if (client) {
    for (const t of tests) {
      if (only.length && !only.some((o) => t.name.includes(o))) continue;
      t0 = Date.now();
      try {
        await withTimeout(t.fn(), TEST_MS, t.name);
        report(true, t.name, t0);
      } catch (err) {
        report(false, t.name, t0, err);
      }
      while (cleanups.length) cleanups.pop()();
    }
    client.close();
    t0 = Date.now();
    const code = await sidecar.stop();
    report(code === 0, 'sidecar exits 0 on SIGTERM', t0,
      code === 0 ? null : `exit ${code}\n${sidecar.tail(80)}`);
  }
  console.log(`${passed} passed, ${failed} failed`);
  process.exit(failed === 0 && passed > 0 ? 0 : 1);
}

main();
