import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const portway = require('./lib/index.js');

export const { Engine, PortwayError, AbortError, HttpResponse, BatchResult, version, abiVersion, statusStr } = portway;
export default portway;
