"""Stage 6, the application: the ``trionet`` CLI (``cli``) and the jobs it runs (training,
searching, exporting, reports), each callable from Python."""
