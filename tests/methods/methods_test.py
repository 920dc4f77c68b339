"""Tests of the method table (mammojax.methods)."""

import ast
import importlib
import pathlib

from absl.testing import absltest
import ml_collections

from mammojax import methods


def _imported_modules(path: pathlib.Path) -> set[str]:
  """Every module an ``import`` / ``from ... import`` of ``path`` names."""
  out = set()
  for node in ast.walk(ast.parse(path.read_text())):
    if isinstance(node, ast.ImportFrom) and node.module:
      out.add(node.module)
      out |= {f"{node.module}.{a.name}" for a in node.names}
    elif isinstance(node, ast.Import):
      out |= {a.name for a in node.names}
  return out


class MethodTableTest(absltest.TestCase):

  def test_every_method_has_the_hooks(self):
    for name, module in methods.METHODS.items():
      method = importlib.import_module(module)
      for hook in methods.HOOKS:
        self.assertTrue(callable(getattr(method, hook, None)),
                        f"{name}.{hook}")
      config = ml_collections.ConfigDict({"method": name})
      self.assertIs(methods.get_method(config), method)

  def test_unknown_or_missing_method_is_an_error(self):
    with self.assertRaisesRegex(
        ValueError, r"config\.method='gcn': expected one of \['cnn_baseline'"
    ):
      methods.get_method(ml_collections.ConfigDict({"method": "gcn"}))
    with self.assertRaisesRegex(ValueError, r"config\.method=None"):
      methods.get_method(ml_collections.ConfigDict({"seed": 0}))

  def test_no_method_module_imports_another(self):
    root = pathlib.Path(methods.__file__).parent
    for path in root.glob("*.py"):
      if path.name == "__init__.py":
        continue
      others = {f"mammojax.methods.{n}" for n in methods.METHODS} - {
          f"mammojax.methods.{path.stem}"
      }
      self.assertEmpty(_imported_modules(path) & others, path.name)

  def test_lower_layers_never_import_training_or_methods(self):
    root = pathlib.Path(methods.__file__).parent.parent
    upper = ("mammojax.training", "mammojax.methods", "mammojax.experiments")
    for package in ("data", "models", "objectives", "reporting"):
      for path in (root / package).rglob("*.py"):
        bad = [m for m in _imported_modules(path) if m.startswith(upper)]
        self.assertEmpty(bad, str(path))


if __name__ == "__main__":
  absltest.main()
