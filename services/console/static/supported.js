// GOV.UK Frontend's feature check (kept in a file so the Content-Security-Policy needs no inline script).
document.body.className += ' js-enabled' + ('noModule' in HTMLScriptElement.prototype ? ' govuk-frontend-supported' : '');
