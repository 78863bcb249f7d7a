import t from 'tap'
import {
  CloseCode,
  RATE_LIMITED_MS,
  SOON_MS,
  SPREAD_MS,
  closeAction,
  isSendableCloseCode
} from '../../lib/protocol/close-codes.js'

t.test('what a client does on each close code of the library', async (t) => {
  t.equal(closeAction(CloseCode.Normal), 'stop')
  t.equal(closeAction(CloseCode.GoingAway), 'spread')
  t.equal(closeAction(CloseCode.ProtocolError), 'stop')
  t.equal(closeAction(CloseCode.UnsupportedData), 'stop')
  t.equal(closeAction(CloseCode.Abnormal), 'backoff')
  t.equal(closeAction(CloseCode.InvalidPayload), 'stop')
  t.equal(closeAction(CloseCode.SlowConsumer), 'soon')
  t.equal(closeAction(CloseCode.MessageTooBig), 'stop')
  t.equal(closeAction(CloseCode.InternalError), 'backoff')
  t.equal(closeAction(CloseCode.TooManyBadMessages), 'stop')
  t.equal(closeAction(CloseCode.AuthExpired), 'refresh')
  t.equal(closeAction(CloseCode.RateLimited), 'slow-down')
})

t.test('other codes: 4000-4499 back off, 4500-4999 stop, anything else backs off', async (t) => {
  for (const code of [4000, 4001, 4499, 1005, 1012, 1013, 1014, 3000, 3999]) t.equal(closeAction(code), 'backoff', String(code))
  for (const code of [4500, 4700, 4999]) t.equal(closeAction(code), 'stop', String(code))
})

t.test('the delays are ordered: soon < spread < rate-limited', async (t) => {
  t.ok(SOON_MS < SPREAD_MS && SPREAD_MS < RATE_LIMITED_MS)
})

t.test('codes an application may send (RFC 6455 section 7.4)', async (t) => {
  for (const code of [1000, 1001, 1003, 1008, 1011, 1014, 3000, 4401, 4999]) t.ok(isSendableCloseCode(code), String(code))
  for (const code of [999, 1004, 1005, 1006, 1015, 2999, 5000, 1000.5, '1000', null, undefined, NaN]) {
    t.notOk(isSendableCloseCode(code), String(code))
  }
})
