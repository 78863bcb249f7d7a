import t from 'tap'
import { responseAction, retryAfterMs } from '../../lib/protocol/http.js'

t.test('responseAction follows the SSE status table', async (t) => {
  const table: Array<[number, string]> = [
    [200, 'open'], [204, 'stop'], [206, 'stop'], [301, 'stop'], [400, 'stop'], [401, 'rejected'], [403, 'stop'],
    [404, 'stop'], [429, 'wait'], [500, 'backoff'], [502, 'backoff'], [503, 'wait'], [504, 'backoff']
  ]
  for (const [status, action] of table) t.equal(responseAction(status), action, String(status))
})

t.test('retryAfterMs reads delay-seconds and HTTP-dates (RFC 9110 section 10.2.3), else 0', async (t) => {
  const now = Date.parse('Wed, 21 Oct 2015 07:28:00 GMT')
  t.equal(retryAfterMs(null, now), 0)
  t.equal(retryAfterMs('0', now), 0)
  t.equal(retryAfterMs('120', now), 120_000)
  t.equal(retryAfterMs('Wed, 21 Oct 2015 07:28:30 GMT', now), 30_000)
  t.equal(retryAfterMs('Wed, 21 Oct 2015 07:27:00 GMT', now), 0, 'a date in the past')
  t.equal(retryAfterMs('-5', now), 0)
  t.equal(retryAfterMs('soon', now), 0)
})
