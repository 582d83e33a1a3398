// Websocket connection with reconnect (exponential backoff) and frame parsing.
import { parseFrame } from './frame.js';

/** Whether this browser inflates raw deflate streams (Chromium 103+, Firefox 113+, Safari 16.4+). */
function canInflate() {
  try {
    new DecompressionStream('deflate-raw'); // eslint-disable-line no-new
    return true;
  } catch {
    return false;
  }
}

export class Socket {
  /**
   * handlers: onOpen(), onMessage(msg), onFrame({header, arrays}), onClose({code, reason, retryIn})
   */
  constructor(handlers) {
    this.h = handlers;
    this.ws = null;
    this.attempt = 0;
    this.timer = null;
    this.nextId = 1;
    this.stopped = false;
    // Messages are handled one after the other, in arrival order: a frame is inflated
    // asynchronously, and a state or ack message after it must not overtake it.
    this.queue = Promise.resolve();
  }

  url() {
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    // frames' payloads come deflated only to a browser that can inflate them (docs/protocol.md)
    return `${proto}//${location.host}/ws${canInflate() ? '?payload=deflate-raw' : ''}`;
  }

  connect() {
    clearTimeout(this.timer);
    this.timer = null;
    const ws = new WebSocket(this.url());
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    ws.onopen = () => this.h.onOpen?.();
    ws.onmessage = (ev) => {
      this.queue = this.queue.then(() => this.handle(ws, ev.data)).catch((err) => console.error(err));
    };
    ws.onclose = (ev) => {
      if (this.ws !== ws) return;
      this.ws = null;
      // 1008: origin refused (retrying cannot help: stop); anything else, 1000 (idle timeout)
      // included: reconnect with exponential backoff (idle closes start a little later)
      if (ev.code === 1008) this.stopped = true;
      const retry = !this.stopped;
      let retryIn = null;
      if (retry) {
        const base = ev.code === 1000 ? 2000 : 500;
        retryIn = Math.min(15000, base * 2 ** this.attempt) * (0.8 + 0.4 * Math.random());
        this.attempt += 1;
        this.timer = setTimeout(() => this.connect(), retryIn);
      }
      this.h.onClose?.({ code: ev.code, reason: ev.reason, retryIn });
    };
  }

  async handle(ws, data) {
    if (typeof data === 'string') {
      let msg;
      try { msg = JSON.parse(data); } catch { return; }
      if (msg.type === 'state') this.attempt = 0;
      this.h.onMessage?.(msg);
    } else {
      const frame = await parseFrame(data);
      if (this.ws === ws) this.h.onFrame?.(frame); // not a frame of a connection closed meanwhile
    }
  }

  /** Close the connection as an idle timeout would (test hook). */
  closeForTest(code = 4000, reason = 'closed for test') {
    this.ws?.close(code, reason);
  }

  get open() {
    return this.ws && this.ws.readyState === WebSocket.OPEN;
  }

  /** Send a message; returns false (and reconnects if idle-closed) when not connected. */
  send(msg) {
    if (!this.open) {
      if (!this.ws && !this.timer && !this.stopped) this.connect();
      return false;
    }
    const out = { ...msg, id: this.nextId++ };
    this.ws.send(JSON.stringify(out));
    return true;
  }
}
