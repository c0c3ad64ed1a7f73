"""Build and install deform_ext.

The C++ extension ``deform_ext.ops._C`` is always built for CPU (OpenMP). Its CUDA
sources are added when a CUDA toolkit is visible to torch and either a GPU is present
or ``FORCE_CUDA=1``; ``TORCH_CUDA_ARCH_LIST`` picks the architectures as usual.
"""
import glob
import os
import re

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))
CSRC = os.path.join('deform_ext', 'ops', 'csrc')


def read_version():
    with open(os.path.join(ROOT, 'deform_ext', 'version.py')) as f:
        return re.search(r"__version__ = '([^']+)'", f.read()).group(1)


def build_cuda():
    import torch
    from torch.utils.cpp_extension import CUDA_HOME
    wanted = torch.cuda.is_available() or os.getenv('FORCE_CUDA', '0') == '1'
    return wanted and CUDA_HOME is not None


def extensions():
    """The op extension, or nothing when the sources are absent."""
    cpp_sources = sorted(glob.glob(os.path.join(CSRC, '**', '*.cpp'), recursive=True))
    if not cpp_sources:
        return [], {}
    from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension
    cxx_flags = ['-O3', '-fopenmp', '-std=c++17']
    define_macros = []
    extension, sources = CppExtension, list(cpp_sources)
    extra = dict(cxx=cxx_flags)
    if build_cuda():
        extension = CUDAExtension
        sources += sorted(glob.glob(os.path.join(CSRC, '**', '*.cu'), recursive=True))
        define_macros.append(('WITH_CUDA', None))
        extra['nvcc'] = ['-O3', '--use_fast_math', '-std=c++17', '--expt-relaxed-constexpr']
    ext = extension(
        name='deform_ext.ops._C',
        sources=sources,
        include_dirs=[os.path.abspath(CSRC)],
        define_macros=define_macros,
        extra_compile_args=extra,
        extra_link_args=['-fopenmp'],
    )
    return [ext], dict(build_ext=BuildExtension.with_options(use_ninja=True))


ext_modules, cmdclass = extensions()
setup(
    name='deform_ext',
    version=read_version(),
    description='Deformable attention for detection on the OpenMMLab stack',
    packages=find_packages(exclude=('tests', 'tests.*', 'configs', 'tools', 'benchmarks')),
    python_requires='>=3.9',
    install_requires=['torch>=2.4'],
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
