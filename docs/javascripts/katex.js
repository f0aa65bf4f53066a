// Typeset the math that pymdownx.arithmatex (generic mode) leaves as \( \) and \[ \] spans,
// with the KaTeX bundled in docs/assets/katex: no network needed. Material's document$
// re-runs it after every instant navigation.
document$.subscribe(({ body }) => {
  renderMathInElement(body, {
    delimiters: [
      { left: "$$", right: "$$", display: true },
      { left: "$", right: "$", display: false },
      { left: "\\(", right: "\\)", display: false },
      { left: "\\[", right: "\\]", display: true },
    ],
    throwOnError: false,
  });
});
