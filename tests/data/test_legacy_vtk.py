"""The NumPy legacy-VTK reader against VTK's own reader, on the real lung trees and on files VTK writes."""

from __future__ import annotations

import numpy as np
import pytest

from gdl.data.legacy_vtk import read_legacy_vtk, write_legacy_vtk
from gdl.data.pointclouds import read_points


def vtk_reference(path):
    """Points and point-data arrays as VTK's generic legacy reader returns them."""
    vtk = pytest.importorskip("vtk")
    from vtk.util.numpy_support import vtk_to_numpy

    reader = vtk.vtkGenericDataObjectReader()
    reader.SetFileName(str(path))
    reader.ReadAllScalarsOn()
    reader.ReadAllVectorsOn()
    reader.ReadAllFieldsOn()
    reader.Update()
    output = reader.GetOutput()
    arrays = output.GetPointData()
    return vtk_to_numpy(output.GetPoints().GetData()), {
        arrays.GetArray(i).GetName(): vtk_to_numpy(arrays.GetArray(i)) for i in range(arrays.GetNumberOfArrays())
    }


def assert_same(ours, reference):
    (points, data), (ref_points, ref_data) = ours, reference
    assert points.dtype == ref_points.dtype and np.array_equal(points, ref_points)
    assert set(data) == set(ref_data)
    for name, values in ref_data.items():
        assert data[name].dtype == values.dtype and data[name].shape == values.shape and np.array_equal(data[name], values), name


@pytest.mark.parametrize("side", ["source", "target"])
def test_lung_trees_read_exactly_as_vtk_reads_them(shared_data, side):
    path = shared_data / "lung_copd1" / f"copd1_{side}.vtk"
    points, data = read_points(path)
    assert points.shape == (60000, 3) and data["weights"].shape == (60000,) and data["pointfea"].shape == (60000, 3)
    assert_same(read_legacy_vtk(path), vtk_reference(path))


@pytest.mark.parametrize("binary", [False, True])
@pytest.mark.parametrize("version", ["4.2", "5.1"])
def test_files_written_by_vtk(tmp_path, binary, version, numpy_rng):
    vtk = pytest.importorskip("vtk")
    from vtk.util.numpy_support import numpy_to_vtk

    rng = numpy_rng
    count = 11
    polydata, points, vertices = vtk.vtkPolyData(), vtk.vtkPoints(), vtk.vtkCellArray()
    points.SetData(numpy_to_vtk(rng.standard_normal((count, 3)).astype(np.float32), deep=True))
    polydata.SetPoints(points)
    for i in range(count):
        vertices.InsertNextCell(1)
        vertices.InsertCellPoint(i)
    polydata.SetVerts(vertices)
    arrays = {"weights": rng.random(count), "pointfea": rng.random((count, 3)).astype(np.float32), "labels": rng.integers(0, 9, (count, 5)).astype(np.int32)}
    for name, values in arrays.items():
        array = numpy_to_vtk(values, deep=True)
        array.SetName(name)
        {"weights": polydata.GetPointData().SetScalars, "pointfea": polydata.GetPointData().SetVectors}.get(name, polydata.GetPointData().AddArray)(array)
    cell_values = numpy_to_vtk(rng.random(count), deep=True)
    cell_values.SetName("cell_only")
    polydata.GetCellData().AddArray(cell_values)
    writer = vtk.vtkPolyDataWriter()
    writer.SetFileName(str(tmp_path / "cloud.vtk"))
    writer.SetInputData(polydata)
    writer.SetFileTypeToBinary() if binary else writer.SetFileTypeToASCII()
    writer.SetFileVersion(writer.VTK_LEGACY_READER_VERSION_4_2 if version == "4.2" else writer.VTK_LEGACY_READER_VERSION_5_1)
    writer.Write()
    ours = read_legacy_vtk(tmp_path / "cloud.vtk")
    if binary:
        assert_same(ours, vtk_reference(tmp_path / "cloud.vtk"))
    else:  # ASCII: VTK prints doubles with fewer digits than it reads back
        reference = vtk_reference(tmp_path / "cloud.vtk")
        np.testing.assert_allclose(ours[0], reference[0], rtol=1e-6)
        assert set(ours[1]) == set(reference[1]) == set(arrays)
        for name in arrays:
            np.testing.assert_allclose(ours[1][name], reference[1][name], rtol=1e-6)


def test_written_files_read_back_by_vtk(tmp_path, numpy_rng):
    rng = numpy_rng
    points, weights, features = rng.standard_normal((9, 3)).astype(np.float32), rng.random(9), rng.random((9, 3))
    write_legacy_vtk(tmp_path / "cloud.vtk", points, {"weights": weights, "pointfea": features})
    ref_points, ref_data = vtk_reference(tmp_path / "cloud.vtk")
    assert np.array_equal(ref_points, points)
    np.testing.assert_allclose(ref_data["weights"], weights, rtol=1e-6)
    np.testing.assert_allclose(ref_data["pointfea"], features, rtol=1e-6)


def test_malformed_files_name_the_file_and_line(tmp_path, shared_data):
    truncated = tmp_path / "truncated.vtk"
    truncated.write_bytes((shared_data / "lung_copd1" / "copd1_source.vtk").read_bytes()[:5000])
    with pytest.raises(ValueError, match=r"truncated.vtk, line 6: expected 180000 binary float values, the file is \d+ bytes too short"):
        read_legacy_vtk(truncated)
    image = tmp_path / "image.vtk"
    image.write_bytes(b"# vtk DataFile Version 3.0\nimage\nASCII\nDATASET STRUCTURED_POINTS\nDIMENSIONS 2 2 1\n")
    with pytest.raises(ValueError, match=r"image.vtk, line 4: a STRUCTURED_POINTS data set holds no point list"):
        read_legacy_vtk(image)
    text = tmp_path / "text.vtk"
    text.write_bytes(b"# vtk DataFile Version 3.0\nt\nASCII\nDATASET POLYDATA\nPOINTS 2 float\n0 0 0 1 1 x\n")
    with pytest.raises(ValueError, match=r"text.vtk, line 6: expected 6 numbers"):
        read_legacy_vtk(text)
