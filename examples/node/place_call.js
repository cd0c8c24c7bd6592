#!/usr/bin/env node
// Places a call through uapi-sidecar, holds and releases leg "01", hangs up.
//
// usage: node examples/node/place_call.js [HOST:PORT]
//
// The address comes from argv[2] (the first argument), else
// $UAPI_SIDECAR_ADDRESS, else 127.0.0.1:50051. The stubs are made at start
// from proto/ by @grpc/proto-loader (run `npm ci` here first).
'use strict';

const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const DEADLINE_MS = 5000;
const EXTENSION = '0003*210';
const PROTO_DIR = path.join(__dirname, '..', '..', 'proto');

function loadService() {
  const definition = protoLoader.loadSync('uapi/phonecalls/v1/phonecalls.proto', {
    includeDirs: [PROTO_DIR],
    keepCase: true, // field names as in the .proto: user_id, phone_call_id
    longs: String,
    enums: String,
    defaults: true,
  });
  return grpc.loadPackageDefinition(definition).uapi.phonecalls.v1.PhoneCallService;
}

// Calls one unary method with a deadline; resolves with the response or
// rejects with the gRPC error, tagged with the step's name.
function rpc(client, method, request) {
  const deadline = new Date(Date.now() + DEADLINE_MS);
  return new Promise((resolve, reject) => {
    client[method](request, { deadline }, (err, response) => {
      if (err) {
        err.step = method;
        reject(err);
      } else {
        resolve(response);
      }
    });
  });
}

// An RFC 3339 string of a google.protobuf.Timestamp ({seconds, nanos}).
function timestampString(ts) {
  if (!ts) return '(unset)';
  const ms = Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1e6);
  return new Date(ms).toISOString();
}

async function placeCall(client) {
  const created = await rpc(client, 'CreateSimplePhoneCall', {
    user_id: '@me',
    extension: EXTENSION,
    source: ['0003*210'],
    destination: ['0003*024'],
  });
  const callId = created.phone_calls[0].id;
  console.log('placed call', callId);

  const leg = {
    user_id: '@me',
    extension: EXTENSION,
    phone_call_id: callId,
    phone_call_view_id: '01',
  };
  const held = await rpc(client, 'OnHold', leg);
  const view = held.phone_call_views.find((v) => v.id === '01');
  console.log('on hold leg 01 since', timestampString(view && view.on_hold));

  await rpc(client, 'OffHold', leg);
  console.log('off hold leg 01');

  const hung = await rpc(client, 'HangupPhoneCalls', {
    user_id: '@me',
    extension: EXTENSION,
    phone_call_id: callId,
  });
  console.log('hung up', hung.phone_call_ids.join(' '));
}

async function main() {
  const address = process.argv[2] || process.env.UAPI_SIDECAR_ADDRESS || '127.0.0.1:50051';
  const PhoneCallService = loadService();
  const client = new PhoneCallService(address, grpc.credentials.createInsecure());
  try {
    await placeCall(client);
  } catch (err) {
    if (err.code === undefined) throw err; // not a gRPC error
    const codes = err.metadata ? err.metadata.get('uapi-error-code') : [];
    console.error(
      `${err.step} failed: status ${grpc.status[err.code]}, ` +
        `message ${JSON.stringify(err.details)}, ` +
        `uapi-error-code ${codes.length ? codes[0] : '(none)'}`,
    );
    process.exitCode = 1;
  } finally {
    client.close();
  }
}

main().catch((err) => {
  console.error(err);
  process.exitCode = 1;
});
