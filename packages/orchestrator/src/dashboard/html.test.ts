import { describe, expect, it } from 'vitest';
import { SafeHtml, escapeHtml, html } from './html.js';

describe('html', () => {
  it('escapes every interpolated text, in text and in quoted attributes', () => {
    const name = `<script>alert("x")</script>' & "`;
    expect(html`<td title="${name}">${name}</td>`.text).toBe(
      '<td title="&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; &amp; &quot;">&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&#39; &amp; &quot;</td>',
    );
  });

  it('keeps markup built by html, joins arrays and drops null, undefined and false', () => {
    const items = ['<a>', 'b'].map((t) => html`<li>${t}</li>`);
    expect(html`<ul>${items}${null}${undefined}${false}${0}</ul>`.text).toBe('<ul><li>&lt;a&gt;</li><li>b</li>0</ul>');
    expect(html`${new SafeHtml('<b>ours</b>')}`.text).toBe('<b>ours</b>');
  });

  it('escapes the five characters that matter and nothing else', () => {
    expect(escapeHtml('a<b>c&d"e\'f\u00e9\n')).toBe('a&lt;b&gt;c&amp;d&quot;e&#39;f\u00e9\n');
  });
});
