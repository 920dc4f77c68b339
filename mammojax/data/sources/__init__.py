"""Parsers of real dataset downloads into `SourceRecord`s + a `BuildReport`.

Each `parse_*` function takes the manually downloaded folder and returns
`(records, report)`; the TFDS builders in `mammojax.data.builders` wrap
them. See each module's docstring for the expected layout and the label
policies.
"""

from mammojax.data.sources.cbis_ddsm import parse_cbis_ddsm
from mammojax.data.sources.cmmd import parse_cmmd
from mammojax.data.sources.common import BuildReport
from mammojax.data.sources.common import SourceError
from mammojax.data.sources.common import SourceRecord
from mammojax.data.sources.databiox import parse_databiox
from mammojax.data.sources.dicom_folder import parse_dicom_folder
from mammojax.data.sources.inbreast import parse_inbreast

PARSERS = {
  'cbis_ddsm': parse_cbis_ddsm,
  'inbreast': parse_inbreast,
  'cmmd': parse_cmmd,
  'databiox': parse_databiox,
  'dicom_folder': parse_dicom_folder,
}

__all__ = [
  'BuildReport',
  'PARSERS',
  'SourceError',
  'SourceRecord',
  'parse_cbis_ddsm',
  'parse_cmmd',
  'parse_databiox',
  'parse_dicom_folder',
  'parse_inbreast',
]
