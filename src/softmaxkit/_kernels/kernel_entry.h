/* The Python entries that live outside _kernel.c (whose method table lists them), and
 * the buffer check they share. Needs Python.h first. */
#ifndef SMK_KERNEL_ENTRY_H
#define SMK_KERNEL_ENTRY_H

#include "kernel_internal.h"

/* kernel_softcap_entry.c: the soft cap of float32 logits and its derivative. */
SMK_INTERNAL PyObject *smk_softcap_entry(PyObject *self, PyObject *args);
/* kernel_plain_loss.c: cross_entropy of the plain call (class indices, no options). */
SMK_INTERNAL PyObject *smk_plain_cross_entropy_entry(PyObject *self, PyObject *args);

/* A 2-D buffer of obj in the native format of letter (float32 'f', float64 'd'), each
 * row contiguous, aligned, writeable if asked; 0, or -1 with an exception set. */
SMK_INTERNAL int smk_matrix_buffer(PyObject *obj, const char *name, char letter,
                                   int writable, Py_buffer *view);

#endif
