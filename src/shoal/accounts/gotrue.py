from fastapi import APIRouter

router = APIRouter(prefix="/auth/v1", tags=["auth"])
