// The console's few behaviours on top of GOV.UK Frontend: live wait clocks and board refresh,
// and the live event stream (server-sent events). Every page works without them.
import { initAll } from '/static/govuk/govuk-frontend.min.js'

initAll()

function waited (since) {
  let seconds = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 1000))
  const days = Math.floor(seconds / 86400); seconds -= days * 86400
  const hours = Math.floor(seconds / 3600); seconds -= hours * 3600
  const minutes = Math.floor(seconds / 60)
  if (days) return `${days} d ${hours} h`
  if (hours) return `${hours} h ${String(minutes).padStart(2, '0')} min`
  return minutes ? `${minutes} min` : 'under a minute'
}

const board = document.getElementById('board')
if (board) {
  setInterval(() => document.querySelectorAll('.console-clock').forEach(c => { c.textContent = waited(c.dataset.since) }), 15000)
  setInterval(async () => {
    const response = await fetch(board.dataset.refresh, { credentials: 'same-origin' })
    if (response.redirected) { window.location.reload(); return } // the session ended: show the sign-in page
    if (response.ok && response.headers.get('content-type').startsWith('text/html')) {
      document.getElementById('board-rows').innerHTML = await response.text()
    }
  }, 15000)
}

const stream = document.getElementById('stream')
if (stream) {
  const rows = document.getElementById('stream-rows')
  const status = document.getElementById('stream-status')
  const source = new EventSource(stream.dataset.source)
  let count = 0
  const say = (state, text) => { status.dataset.state = state; status.textContent = text }
  source.onopen = () => say('live', 'Live: waiting for events.')
  source.addEventListener('line', (message) => {
    const line = JSON.parse(message.data)
    const row = document.createElement('tr')
    row.className = 'govuk-table__row'
    row.dataset.eventType = line.event_type
    row.dataset.packageId = line.package_id
    for (const value of [line.at.slice(11, 23), line.event_type, line.package_id, line.zone || '-', line.band || '-', line.provider || '-', line.outcome]) {
      const cell = document.createElement('td')
      cell.className = 'govuk-table__cell'
      if (value === line.package_id && /^[0-9a-f-]{36}$/.test(value)) { // each row links to its package's page
        const link = document.createElement('a')
        link.className = 'govuk-link'
        link.href = `/packages/${value}`
        link.textContent = value.slice(0, 8)
        cell.appendChild(link)
      } else {
        cell.textContent = value === line.package_id ? '-' : value
      }
      row.appendChild(cell)
    }
    rows.prepend(row)
    while (rows.children.length > 500) rows.lastElementChild.remove()
    count += 1
    say('live', `Live: ${count} event${count === 1 ? '' : 's'} so far.`)
  })
  source.onerror = () => say('reconnecting', 'The stream was interrupted; reconnecting...')
}
