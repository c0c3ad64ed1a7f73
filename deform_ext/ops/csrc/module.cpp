// The Python entry point of deform_ext.ops._C. It exports nothing: importing the
// module loads the shared library, whose static initialisers register each op with
// the PyTorch dispatcher (see the *_registration.cpp file next to each op).
#include <Python.h>

extern "C" PyMODINIT_FUNC PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}
