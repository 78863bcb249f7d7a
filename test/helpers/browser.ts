// The browser end-to-end tests drive Debian's Chromium (/usr/bin/chromium, installed by .ci/run)
// through playwright-core: a real EventSource and a real WebSocket, which this project did not write.
import { existsSync } from 'node:fs'
import { mkdir } from 'node:fs/promises'
import { chromium, type Browser, type Page } from 'playwright-core'
import type { Test } from 'tap'

export const CHROMIUM = '/usr/bin/chromium'

const ARGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync'
]

/** Where the demo pages' screenshots go, for a person to look at (gitignored). */
const SCREENSHOTS = new URL('../../screenshots/', import.meta.url)

/**
 * Launches headless Chromium for one test file, closed when the file ends. Each launch gets a fresh
 * profile: Playwright creates a new user-data dir under os.tmpdir() and removes it on close.
 * Without Chromium the file is skipped with the reason, locally only: in CI (CI set) it fails.
 */
export async function launchBrowser (t: Test, extraArgs: string[] = []): Promise<Browser | undefined> {
  if (!existsSync(CHROMIUM)) {
    const reason = `no Chromium at ${CHROMIUM} (apt-get install chromium, as .ci/run does)`
    if (process.env.CI !== undefined) {
      t.fail(reason)
      return undefined
    }
    console.error(`# browser tests skipped: ${reason}`)
    t.plan(0, reason)
    return undefined
  }
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...ARGS, ...extraArgs], timeout: 30000 })
  t.teardown(() => browser.close())
  return browser
}

/** A page in a fresh browser context (its own cookies and storage), closed when the test ends. */
export async function openPage (t: Test, browser: Browser): Promise<{ page: Page, errors: Error[], logged: string[] }> {
  const context = await browser.newContext()
  t.teardown(() => context.close())
  const page = await context.newPage()
  page.setDefaultTimeout(10000)
  // Uncaught exceptions of the page's scripts, and what it logged: a test asserts on them.
  const errors: Error[] = []
  const logged: string[] = []
  page.on('pageerror', (err) => errors.push(err))
  page.on('console', (message) => logged.push(message.text()))
  return { page, errors, logged }
}

/** Resolves once the element's text contains `text`. */
export async function waitForText (page: Page, selector: string, text: string): Promise<void> {
  await page.waitForFunction(
    ([selector, text]) => document.querySelector(selector as string)?.textContent?.includes(text as string) === true,
    [selector, text]
  )
}

/** The text of every element matching `selector`, in document order. */
export function textsOf (page: Page, selector: string): Promise<string[]> {
  return page.locator(selector).allTextContents()
}

/** Saves a screenshot of the page as screenshots/<name>.png. */
export async function screenshot (page: Page, name: string): Promise<void> {
  await mkdir(SCREENSHOTS, { recursive: true })
  await page.screenshot({ path: new URL(`${name}.png`, SCREENSHOTS).pathname, fullPage: true })
}

/** What Chromium fails a request or a WebSocket handshake with while the context is offline. */
export const OFFLINE = 'net::ERR_INTERNET_DISCONNECTED'

/**
 * Counts the connection attempts of a page to `path` (HTTP requests and WebSocket handshakes) that
 * the browser failed for being offline: attempts made, that no server saw. `reached(count)`
 * resolves once there are that many.
 */
export function attemptsFailedOffline (page: Page, path: string): { count: () => number, reached: (count: number) => Promise<void> } {
  let failed = 0
  const waiters: Array<{ count: number, resolve: () => void }> = []
  const record = (url: string, errorText: string | undefined): void => {
    if (new URL(url).pathname !== path || errorText !== OFFLINE) return
    failed++
    for (const waiter of waiters.filter(({ count }) => failed >= count)) {
      waiters.splice(waiters.indexOf(waiter), 1)
      waiter.resolve()
    }
  }
  page.on('requestfailed', (request) => record(request.url(), request.failure()?.errorText))
  page.on('websocket', (socket) => socket.on('socketerror', (error) => record(socket.url(), error.replace(/^.*: /, ''))))
  return {
    count: () => failed,
    reached: (count) => new Promise((resolve) => {
      if (failed >= count) resolve()
      else waiters.push({ count, resolve })
    })
  }
}
