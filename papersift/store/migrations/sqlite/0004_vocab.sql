-- The full-text index's vocabulary (term, number of papers, number of occurrences), read by the
-- spelling corrector (store/spelling.py). A view over papers_fts: nothing to keep in step.
CREATE VIRTUAL TABLE papers_fts_vocab USING fts5vocab('papers_fts', 'row');
