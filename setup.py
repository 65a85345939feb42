"""Ship the letter templates and the documentation inside the wheel, from their one source:
the top-level templates/, README.md and docs/.

IT installs a built wheel (`pip install .`), not a checkout, and a wheel holds packages only:
without this, `advising run` on a server finds no letter template. The build copies templates/
into flows/letters/templates/; a checkout (editable install) reads templates/ directly.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = Path(__file__).resolve().parent
SOURCE = ROOT / "templates"


class BuildWithTemplates(build_py):
    """build_py, plus the templates and docs copied where flows looks for packaged copies."""

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads templates/ in the checkout
        target = Path(self.build_lib) / "flows" / "letters" / "templates"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(SOURCE, target)
        # The documents messages and `advising docs` name: README.md and docs/*.md.
        docs = Path(self.build_lib) / "flows" / "docs"
        if docs.exists():
            shutil.rmtree(docs)
        docs.mkdir(parents=True)
        shutil.copy2(ROOT / "README.md", docs / "README.md")
        for page in sorted((ROOT / "docs").glob("*.md")):
            shutil.copy2(page, docs / page.name)


setup(cmdclass={"build_py": BuildWithTemplates})
